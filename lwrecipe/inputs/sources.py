"""Everything a set of recipes downloads: gathering it, fetching it in parallel,
and laying a recipe's sources out as a source tree.

Downloads go through fetch.Downloader, git sources through gitsrc; a failure of
one input does not hide the others: every problem of a run is reported.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import LwrecipeError, RecipeError, UnsafeArchive, raise_all
from ..recipes.keys import Sha256, sha256_bytes
from ..recipes.recipe import DebSource, GitSource, PathSource, Recipe, SourcePatch, UrlPatch, UrlSource
from ..store.store import Store
from .debs import extract_debs
from .fetch import Downloader, Fetched, Wanted
from .gitsrc import GitTree, extract_to, fetch_tree, read_member
from .mirrors import Mirrors
from .unpack import normalise_tree, symlink_on_the_way, unpack


def downloads(recipe: Recipe, mirrors: Mirrors = Mirrors()) -> list[Wanted]:
    found = []
    for i, src in enumerate(recipe.doc.sources):
        if isinstance(src, UrlSource):
            found.append(Wanted(f"{recipe.name}: sources[{i}]", Sha256(src.sha256), (src.url, *src.mirrors),
                                src.basename))
        elif isinstance(src, DebSource):
            users = tuple(mirrors.debian_urls(src.url))  # the user's Debian mirrors: any address
            found.append(Wanted(f"{recipe.name}: sources[{i}]", Sha256(src.sha256), (src.url, *src.mirrors, *users),
                                src.basename, trusted=users))
    for i, patch in enumerate(recipe.doc.patches):
        if isinstance(patch, UrlPatch):
            name = patch.url.rstrip("/").rsplit("/", 1)[-1]
            found.append(Wanted(f"{recipe.name}: patches[{i}]", Sha256(patch.sha256), (patch.url, *patch.mirrors), name))
    return found


def git_sources(recipe: Recipe) -> list[tuple[str, GitSource]]:
    return [(f"{recipe.name}: sources[{i}]", s) for i, s in enumerate(recipe.doc.sources) if isinstance(s, GitSource)]


@dataclass
class Fetch:
    """What a fetch run obtained: downloads, git trees, and the sha256 of each
    patch that lives inside a git source."""

    files: dict[Sha256, Fetched] = field(default_factory=dict)
    trees: dict[str, GitTree] = field(default_factory=dict)  # by rev
    source_patches: dict[tuple[str, int], Sha256] = field(default_factory=dict)


def fetch_recipes(recipes: list[Recipe], store: Store, downloader: Downloader, jobs: int = 4,
                  offline: bool = False, mirrors: Mirrors = Mirrors()) -> Fetch:
    """Every download and git tree of `recipes`; `mirrors` gives the git and Debian
    mirrors (the downloader has the file mirrors)."""
    wanted: dict[Sha256, Wanted] = {}
    gits: dict[str, tuple[str, GitSource]] = {}
    for recipe in recipes:
        for w in downloads(recipe, mirrors):
            wanted.setdefault(w.sha256, w)
        for label, src in git_sources(recipe):
            gits.setdefault(src.rev, (label, src))
    result = Fetch()
    errors: list[LwrecipeError] = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        file_jobs = {sha: pool.submit(downloader.fetch, w, offline) for sha, w in wanted.items()}
        git_jobs = {rev: pool.submit(fetch_tree, store, label, src.git, rev, offline, mirrors,
                                     downloader.client.policy)
                    for rev, (label, src) in gits.items()}
        for sha, job in file_jobs.items():
            try:
                result.files[sha] = job.result()
            except LwrecipeError as exc:
                errors.append(exc)
        for rev, job in git_jobs.items():
            try:
                result.trees[rev] = job.result()
            except LwrecipeError as exc:
                errors.append(exc)
    for recipe in recipes:
        for i, patch in enumerate(recipe.doc.patches):
            if not isinstance(patch, SourcePatch):
                continue
            src = recipe.source_named(patch.source)
            if isinstance(src, GitSource) and src.rev in result.trees:
                data = read_member(result.trees[src.rev].path, patch.path)
                if data is None:
                    errors.append(RecipeError.one(recipe.display, f"patches[{i}].path",
                                                  f"{patch.path!r} is not a file in {patch.source} @ {src.rev[:12]}"))
                else:
                    result.source_patches[(recipe.name, i)] = sha256_bytes(data)
    raise_all(errors)
    return result


def source_dir(src_tree: Path, dest: str) -> Path:
    """Where a source lands: `dest` relative to the source tree (which `../x` may leave by one level)."""
    return Path(src_tree.parent, *PurePosixPath(src_tree.name, dest).parts)


def _no_links(label: str, base: Path, target: Path) -> None:
    """Nothing is laid out through a symlink an earlier source left (a tarball's
    `x -> /etc`, then a source with dest = "x", would write into the host)."""
    link = symlink_on_the_way(base, target.relative_to(base).parts)
    if link is not None:
        raise UnsafeArchive(f"{label}: its destination goes through the symlink {link.relative_to(base)} "
                            "an earlier source made")


def lay_out(recipe: Recipe, fetched: Fetch, src_tree: Path) -> None:
    """Unpack every source of `recipe` in order into `src_tree` (sources kept with
    unpack = false go to `src_tree/../<name>`)."""
    src_tree.mkdir(parents=True, exist_ok=True)
    debs: list[tuple[Path, Path, str]] = []
    for i, src in enumerate(recipe.doc.sources):
        label = f"{recipe.display}: sources[{i}]"
        target = source_dir(src_tree, src.dest) if src.unpack else src_tree.parent / (src.name or "")
        _no_links(label, src_tree.parent, target)
        if isinstance(src, DebSource):  # consecutive packages go together: the next decompresses meanwhile
            debs.append((fetched.files[Sha256(src.sha256)].path, target, f"{label} ({src.deb} {src.version})"))
            continue
        extract_debs(debs)
        debs.clear()
        if isinstance(src, UrlSource):
            path = fetched.files[Sha256(src.sha256)].path
            if src.unpack:
                unpack(path, target, src.strip, label)
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target / src.basename)
        elif isinstance(src, GitSource):
            staging = target.parent / f".git-{i}"
            extract_to(fetched.trees[src.rev].path, staging)
            _merge_stripped(staging, target, src.strip)
        else:
            assert isinstance(src, PathSource)
            origin = recipe.root / src.path
            target.mkdir(parents=True, exist_ok=True)
            if origin.is_dir():
                shutil.copytree(origin, target, symlinks=True, dirs_exist_ok=True)
            else:
                shutil.copy2(origin, target / origin.name)
    extract_debs(debs)
    normalise_tree(src_tree)


def _merge_stripped(staging: Path, target: Path, strip: int) -> None:
    root = staging
    for _ in range(strip):
        children = list(root.iterdir())
        if len(children) != 1 or not children[0].is_dir():
            raise RecipeError.one(str(staging), "strip", "cannot strip: the tree has more than one top entry")
        root = children[0]
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(root, target, symlinks=True, dirs_exist_ok=True)
    shutil.rmtree(staging)
