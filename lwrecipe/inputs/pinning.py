"""`pin` and `new`: writing pins a person would otherwise compute by hand.

`pin_recipe` rewrites a recipe file's pins in place, keeping every other byte
(tomlkit): each url source or patch whose sha256 is missing, empty or "update"
(or whose URL `--version` changed) is downloaded and hashed, each git source
given a ref gets the commit that ref names. Everything is fetched before
anything is written, and the result must validate: a failure writes nothing.

`skeleton` makes a new recipe from one downloaded archive: the pinned source, a
version read from its file name, and a build script for the build system its
top-level files show.
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.digests import Sha256
from ..core.documents import RECIPE_LIMIT, read_toml_text
from ..core.errors import FetchError, LwrecipeError, RecipeError, UsageError, raise_all
from ..core.files import replace_text
from ..recipes.recipe import display_path, load_recipe, parse_recipe
from ..recipes.schema import NAME_PATTERN, is_name
from ..store.store import Store
from .addresses import AddressPolicy, git_refusal
from .gitsrc import GIT_ENV
from .mirrors import Mirrors

if TYPE_CHECKING:
    from .web import Client

UPDATE = "update"  # a sha256 value that asks `pin` for a new one


def download_unpinned(store: Store, client: Client, url: str) -> tuple[Sha256, int]:
    """Download `url`, whose sha256 is not known yet, into sources/ under the sha256
    its bytes have (so the build that follows needs no second download)."""
    from .web import HttpError

    try:
        with store.staging() as staged:
            with client.request("GET", url) as resp:
                if resp.status != 200:
                    raise FetchError(url, [f"{url}: HTTP {resp.status}"])
                for piece in resp.iter_raw():
                    staged.write(piece)
            sha, size = Sha256(staged.hexdigest()), staged.size
            store.commit(staged, "sources")
    except HttpError as exc:
        raise FetchError(url, [f"{url}: {exc}"]) from None
    return sha, size


def resolve_ref(url: str, ref: str, mirrors: Mirrors = Mirrors(), policy: AddressPolicy | None = None) -> str:
    """The commit a branch or tag names (an annotated tag's commit, not the tag), from
    the git mirrors first, then the URL (which must pass `policy`, as a fetch's)."""
    attempts = []
    for where in mirrors.git_locations(url):
        refusal = git_refusal(policy or AddressPolicy.from_env(), where) if where == url else None
        if refusal is not None:
            attempts.append(f"{where}: {refusal}")
            continue
        out = subprocess.run(
            ["git", "ls-remote", "--", where, ref, f"{ref}^{{}}"],
            capture_output=True,
            text=True,
            env={**GIT_ENV, "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            timeout=300,
        )
        if out.returncode != 0:
            attempts.append(f"{where}: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else 'failed'}")
            continue
        found = {ref: sha for sha, ref in (line.split("\t", 1) for line in out.stdout.splitlines() if "\t" in line)}
        for name in (f"refs/tags/{ref}^{{}}", f"{ref}^{{}}", f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
            if name in found:
                return found[name]
        attempts.append(f"{where}: no branch or tag {ref!r}")
    raise FetchError(f"git {url} {ref}", attempts)


@dataclass
class PinResult:
    old_text: str
    new_text: str
    pinned: list[str] = field(default_factory=list)  # "sources[0]: sha256 …" lines

    def diff(self, shown: str) -> str:
        return "".join(
            difflib.unified_diff(
                self.old_text.splitlines(True), self.new_text.splitlines(True), f"a/{shown}", f"b/{shown}"
            )
        )


def pin_recipe(
    path: Path,
    store: Store,
    client: Client,
    version: str | None = None,
    refs: dict[str, str] | None = None,
    mirrors: Mirrors = Mirrors(),
) -> PinResult:
    """The recipe's text with new pins (see the module's docstring); nothing is written."""
    import tomlkit

    shown = display_path(path)
    text = read_toml_text(path, RECIPE_LIMIT, shown)  # bounded and depth-checked before tomlkit recurses
    try:
        doc = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise RecipeError.one(shown, "", str(exc)) from None
    result = PinResult(text, text)
    refs = dict(refs or {})
    old_version = str(doc.get("package", {}).get("version", ""))
    if version is not None:
        if not old_version:
            raise UsageError(f"{shown}: package.version: none to replace with {version}")
        doc["package"]["version"] = version
    errors: list[LwrecipeError] = []
    gits = [t for t in doc.get("sources", []) if "git" in t]
    for area in ("sources", "patches"):
        for i, table in enumerate(doc.get(area, [])):
            where = f"{area}[{i}]"
            try:
                if "url" in table:
                    _pin_download(table, where, store, client, old_version, version, result)
                elif "git" in table:
                    name = str(table.get("name", ""))
                    ref = refs.pop(name, None) if name in refs else (refs.pop("", None) if len(gits) == 1 else None)
                    if ref is not None:
                        rev = resolve_ref(str(table["git"]), ref, mirrors, client.policy)
                        if rev != table.get("rev"):
                            table["rev"] = rev
                            result.pinned.append(f"{where}: rev {rev} ({ref})")
            except LwrecipeError as exc:
                errors.append(exc)
    if refs:
        raise UsageError(
            f"{shown}: --ref {', '.join(n or '(one git source)' for n in refs)}: no git source of that name"
        )
    raise_all(errors)
    result.new_text = tomlkit.dumps(doc)
    parse_recipe(result.new_text.encode(), shown)  # never a recipe that does not validate
    return result


def _pin_download(
    table: Any, where: str, store: Store, client: Client, old_version: str, version: str | None, result: PinResult
) -> None:
    url = str(table["url"])
    new_url = _with_version(url, old_version, version) if version and old_version else url
    if new_url != url:
        table["url"] = new_url
        if "mirrors" in table:
            table["mirrors"] = [_with_version(str(m), old_version, version or old_version) for m in table["mirrors"]]
    elif str(table.get("sha256", "")) not in ("", UPDATE):
        return
    sha, size = download_unpinned(store, client, new_url)
    if str(table.get("sha256", "")) != sha:
        table["sha256"] = sha
        result.pinned.append(f"{where}: sha256 {sha} ({new_url}, {size} bytes)")


def _with_version(url: str, old: str, new: str) -> str:
    """`url` with each whole occurrence of the version `old` replaced (1.2 in
    pkg-1.2.tar.gz and /v1.2/, not in 11.2 or 1.23)."""
    return re.sub(rf"(?:(?<![0-9A-Za-z.])|(?<=[/_-]v)){re.escape(old)}(?![0-9A-Za-z]|\.[0-9])", new, url)


_ARCHIVE = re.compile(
    r"^(?P<name>.+?)[-_]v?(?P<version>\d[\w.+~]*?)(?:\.orig)?"
    r"\.(?:tar\.(?:gz|bz2|xz|zst)|tgz|tbz2|txz|zip)$"
)


def guess_version(url: str) -> str | None:
    match = _ARCHIVE.match(url.rstrip("/").rsplit("/", 1)[-1].split("?")[0])
    return match["version"] if match else None


BUILD_SYSTEMS = {
    # top-level file -> (what, host tools, script)
    "configure": (
        "autotools",
        ["sh", "make", "cc"],
        './configure --prefix=/usr\nmake -j"$LW_JOBS"\nmake install DESTDIR="$LW_OUT"',
    ),
    "CMakeLists.txt": (
        "CMake",
        ["cmake", "ninja", "cc"],
        'cmake -S . -B "$TMPDIR/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr\n'
        'cmake --build "$TMPDIR/build" -j "$LW_JOBS"\n'
        'DESTDIR="$LW_OUT" cmake --install "$TMPDIR/build"',
    ),
    "meson.build": (
        "Meson",
        ["meson", "ninja", "cc"],
        'meson setup "$TMPDIR/build" --prefix=/usr --buildtype=release\n'
        'meson compile -C "$TMPDIR/build" -j "$LW_JOBS"\n'
        'DESTDIR="$LW_OUT" meson install -C "$TMPDIR/build"',
    ),
    "Makefile": ("a Makefile", ["make", "cc"], 'make -j"$LW_JOBS"\nmake install DESTDIR="$LW_OUT" PREFIX=/usr'),
}


def detect(top_level: set[str]) -> tuple[str, list[str], str]:
    """The build system a source tree's top-level files show, its tools and script."""
    for marker in ("configure", "CMakeLists.txt", "meson.build", "Makefile"):
        if marker in top_level:
            return BUILD_SYSTEMS[marker]
    return (
        "no build system lwrecipe knows",
        ["mkdir", "cp"],
        "# no configure, CMakeLists.txt, meson.build or Makefile at the top: write the build here\n"
        'mkdir -p "$LW_OUT"\ncp -R . "$LW_OUT/"',
    )


def top_level(archive: Path) -> tuple[set[str], int]:
    """The names at the top of an archive's tree, and the strip that reaches them
    (1 when everything is under one directory, as release tarballs are)."""
    import tarfile
    import zipfile

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = [n.rstrip("/") for n in zf.namelist()]
    else:
        with tarfile.open(archive) as tar:
            names = [m.name.lstrip("./") for m in tar.getmembers()]
    parts = [n.split("/") for n in names if n]
    firsts = {p[0] for p in parts}
    if len(firsts) == 1 and any(len(p) > 1 for p in parts):
        return {p[1] for p in parts if len(p) > 1}, 1
    return firsts, 0


def skeleton(name: str, url: str, sha: str, version: str, archive: Path, environment: str | None) -> tuple[str, str]:
    """A new recipe's text and the build system it guessed."""
    import tomlkit

    names, strip = top_level(archive)
    what, tools, script = detect(names)
    doc = tomlkit.document()
    doc.add(
        tomlkit.comment(
            f"Made by `lwrecipe new {name} --url …`: the build ({what}) was guessed from the archive's top-level files."
        )
    )
    doc.add(
        tomlkit.comment("Check the license (an SPDX expression) and the script, then `lwrecipe build " + name + "`.")
    )
    doc.add("schema", 1)
    package = tomlkit.table()
    package.add("name", name)
    package.add("version", version)
    package.add("license", "NOASSERTION")
    package.add("description", f"{name} {version}, built from its release archive")
    doc.add("package", package)
    source = tomlkit.table()
    source.add("url", url)
    source.add("sha256", sha)
    if strip:
        source.add("strip", strip)
    sources = tomlkit.aot()
    sources.append(source)
    doc.add("sources", sources)
    build = tomlkit.table()
    if environment:
        build.add("environment", environment)
    build.add("host_tools", tools)
    build.add("script", tomlkit.string("\n" + script + "\n", multiline=True, literal=True))
    doc.add("build", build)
    return tomlkit.dumps(doc), what


@dataclass(frozen=True)
class NewRecipe:
    """`new`: the recipe file to write, checked before anything is downloaded."""

    name: str
    path: Path
    url: str
    version: str
    environment: str | None  # the project's buildenv, which a new recipe is built on


@dataclass(frozen=True)
class Written:
    text: str
    what: str  # the build system it guessed
    sha: Sha256
    size: int


def plan_new(root: Path, name: str, url: str, version: str | None) -> NewRecipe:
    """Where `new` writes recipe `name` in the project at `root`; UsageError when the
    name is no recipe name, the file exists, or no version is given or guessed."""
    if not is_name(name):
        raise UsageError(f"new: {name!r} is not a recipe name ({NAME_PATTERN})")
    path = root / "recipes" / f"{name}.toml"
    if path.exists():
        raise UsageError(f"{display_path(path)}: already exists")
    version = version or guess_version(url)
    if version is None:
        raise UsageError(f"new: no version in the file name of {url}; give --version")
    environment = "buildenv" if (root / "recipes" / "buildenv.toml").is_file() else None
    return NewRecipe(name, path, url, version, environment)


def write_new(new: NewRecipe, store: Store, client: Client) -> Written:
    """Download the archive, pin it and write the recipe's skeleton; a skeleton that
    does not load is removed again."""
    sha, size = download_unpinned(store, client, new.url)
    text, what = skeleton(new.name, new.url, sha, new.version, store.path("sources", sha), new.environment)
    new.path.parent.mkdir(exist_ok=True)
    replace_text(new.path, text)
    try:
        load_recipe(new.path)
    except Exception:
        new.path.unlink()
        raise
    return Written(text, what, sha, size)
