"""Everything a set of recipes downloads: gathering it, fetching it in parallel,
and laying a recipe's sources out as a source tree.

Downloads go through fetch.Downloader, git sources through gitsrc; a failure of
one input does not hide the others: every problem of a run is reported.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..core.digests import Sha256, sha256_bytes
from ..core.errors import LwrecipeError, RecipeError, UnsafeArchive, raise_all
from ..core.safefs import Beneath
from ..recipes.recipe import Recipe
from ..recipes.schema import DebSource, GitSource, PathSource, SourcePatch, UrlPatch, UrlSource
from ..store.store import Store
from .debs import extract_debs
from .entries import UnpackLimits
from .fetch import Downloader, Fetched, Wanted
from .gitsrc import GitTree, extract_to, fetch_tree, read_member
from .merge import BuildDir, stripped
from .mirrors import Mirrors
from .unpack import normalise_tree, unpack


def downloads(recipe: Recipe, mirrors: Mirrors = Mirrors()) -> list[Wanted]:
    found = []
    for i, src in enumerate(recipe.doc.sources):
        if isinstance(src, UrlSource):
            found.append(
                Wanted(f"{recipe.name}: sources[{i}]", Sha256(src.sha256), (src.url, *src.mirrors), src.basename)
            )
        elif isinstance(src, DebSource):
            configured = tuple(mirrors.debian_urls(src.url))
            users = tuple(mirrors.debian_urls(src.url, users_only=True))  # the user's Debian mirrors: any address
            found.append(
                Wanted(
                    f"{recipe.name}: sources[{i}]",
                    Sha256(src.sha256),
                    (src.url, *src.mirrors, *configured),
                    src.basename,
                    trusted=users,
                )
            )
    for i, patch in enumerate(recipe.doc.patches):
        if isinstance(patch, UrlPatch):
            name = patch.url.rstrip("/").rsplit("/", 1)[-1]
            found.append(
                Wanted(f"{recipe.name}: patches[{i}]", Sha256(patch.sha256), (patch.url, *patch.mirrors), name)
            )
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


def fetch_recipes(
    recipes: list[Recipe],
    store: Store,
    downloader: Downloader,
    jobs: int = 4,
    offline: bool = False,
    mirrors: Mirrors = Mirrors(),
) -> Fetch:
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
        git_jobs = {
            rev: pool.submit(fetch_tree, store, label, src.git, rev, offline, mirrors, downloader.client.policy)
            for rev, (label, src) in gits.items()
        }
        for sha, file_job in file_jobs.items():
            try:
                result.files[sha] = file_job.result()
            except LwrecipeError as exc:
                errors.append(exc)
        for rev, git_job in git_jobs.items():
            try:
                result.trees[rev] = git_job.result()
            except LwrecipeError as exc:
                errors.append(exc)
    for recipe in recipes:
        for i, patch in enumerate(recipe.doc.patches):
            if not isinstance(patch, SourcePatch):
                continue
            named = recipe.source_named(patch.source)
            if isinstance(named, GitSource) and named.rev in result.trees:
                data = read_member(result.trees[named.rev].path, patch.path)
                if data is None:
                    errors.append(
                        RecipeError.one(
                            recipe.display,
                            f"patches[{i}].path",
                            f"{patch.path!r} is not a file in {patch.source} @ {named.rev[:12]}",
                        )
                    )
                else:
                    result.source_patches[(recipe.name, i)] = sha256_bytes(data)
    raise_all(errors)
    return result


def lay_out(recipe: Recipe, fetched: Fetch, src_tree: Path, limits: UnpackLimits = UnpackLimits()) -> None:
    """Unpack every source of `recipe` in order into `src_tree` (sources kept with
    unpack = false go to `src_tree/../<name>`). Nothing is written through a link
    (merge.BuildDir): archives and git trees are unpacked into a staging directory
    of their own and moved in entry by entry, path sources copied the same way.
    `limits` (the user's `[unpack]`) bounds each archive."""
    src_tree.mkdir(parents=True, exist_ok=True)
    top = BuildDir(src_tree.parent, src_tree.name)
    debs: list[tuple[Path, Path, str]] = []
    deb_targets: list[tuple[str, str]] = []
    try:
        for i, src in enumerate(recipe.doc.sources):
            label = f"{recipe.display}: sources[{i}]"
            rel = top.rel(src.dest) if src.unpack else (src.name or "")
            top.target(label, rel).close()
            if isinstance(src, DebSource):  # consecutive packages go together: the next decompresses meanwhile
                debs.append(
                    (
                        fetched.files[Sha256(src.sha256)].path,
                        src_tree.parent / rel,
                        f"{label} ({src.deb} {src.version})",
                    )
                )
                deb_targets.append((label, rel))
                continue
            _extract_debs(top, debs, deb_targets, limits)
            _lay_out_one(top, recipe, i, label, src, rel, fetched, src_tree.parent, limits)
        _extract_debs(top, debs, deb_targets, limits)
    finally:
        top.close()
    normalise_tree(src_tree)


def _extract_debs(
    top: BuildDir, debs: list[tuple[Path, Path, str]], targets: list[tuple[str, str]], limits: UnpackLimits
) -> None:
    """Debian packages are unpacked in place: extract_deb refuses every entry whose
    parents include a link and replaces (never writes through) a link at its name."""
    extract_debs(debs, limits)
    by_rel: dict[str, list[str]] = {}
    for label, rel in targets:
        by_rel.setdefault(rel, []).append(label)
    for rel, labels in by_rel.items():  # each tree walked once; its links are one of these packages'
        first, last = labels[0], labels[-1].rsplit(": ", 1)[-1]
        top.record(
            first if len(labels) == 1 else f"{first.rsplit(': ', 1)[0]}: one of {first.rsplit(': ', 1)[-1]}…{last}", rel
        )
    debs.clear()
    targets.clear()


def _lay_out_one(
    top: BuildDir,
    recipe: Recipe,
    i: int,
    label: str,
    src: UrlSource | GitSource | PathSource,
    rel: str,
    fetched: Fetch,
    build_dir: Path,
    limits: UnpackLimits,
) -> None:
    if isinstance(src, UrlSource) and not src.unpack:
        with open(fetched.files[Sha256(src.sha256)].path, "rb") as fh:
            top.put_file(label, fh.fileno(), rel, src.basename)
    elif isinstance(src, (UrlSource, GitSource)):
        staging = Path(tempfile.mkdtemp(dir=build_dir, prefix=f".staging-{i}-"))
        try:
            if isinstance(src, UrlSource):
                unpack(fetched.files[Sha256(src.sha256)].path, staging, src.strip, label, limits)
                strip = 0
            else:
                extract_to(fetched.trees[src.rev].path, staging, limits)
                strip = src.strip
            with Beneath(staging) as tree:
                root = stripped(recipe.display, f"sources[{i}].strip", tree.fd, strip)
                try:
                    top.merge(label, root, rel, move=True)
                finally:
                    os.close(root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    else:
        origin = recipe.root / src.path  # checked when the recipe was read: inside the project
        fd = os.open(origin, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                top.merge(label, fd, rel, move=False)
            elif stat.S_ISREG(os.fstat(fd).st_mode):
                top.put_file(label, fd, rel, origin.name)
            else:
                raise UnsafeArchive(f"{label}: {src.path}: not a file or a directory")
        finally:
            os.close(fd)
