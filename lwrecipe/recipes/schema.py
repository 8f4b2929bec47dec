"""The recipe schema (version 1) as pydantic models, and the checks across its fields.

Owns what a recipe may *say*: the models, the one recipe-name pattern, and the
per-field and cross-field rules. Pure values: reading files is recipe.py's job,
turning pydantic's errors into one-line problems is messages.py's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag

from ..core.digests import is_git_rev, is_sha256
from ..core.errors import Problem
from ..core.urls import url_problem

SCHEMA_VERSION = 1
DEFAULT_SOURCE_DATE_EPOCH = 315532800
"""1980-01-01T00:00:00Z: the earliest time every archive format (zip included) can hold."""

RESERVED_ENV = frozenset({"PATH", "HOME", "TMPDIR", "SOURCE_DATE_EPOCH", "LC_ALL", "TZ"})
RESERVED_DEST_ROOTS = frozenset({"src", "out", "home", "tmp", "deps", ".lwrecipe", "build.log"})

NAME_PATTERN = r"[a-z0-9][a-z0-9-]*"
"""A recipe's name (and a source's): what `package.name` accepts. Safe as a file
name on every host, since it cannot start with a dot or hold a slash."""


def is_name(value: str) -> bool:
    """Whether `value` could be the name of a recipe."""
    return re.fullmatch(NAME_PATTERN, value) is not None


def checked(accepts: str | Callable[[str], object], message: str) -> AfterValidator:
    """A validator that passes a string `accepts` takes (a pattern the whole string
    must match, or a predicate) and refuses any other with `message`, formatted
    with the string (`"{!r} is not a version"`)."""
    test = re.compile(accepts).fullmatch if isinstance(accepts, str) else accepts

    def check(value: str) -> str:
        if not test(value):
            raise ValueError(message.format(value))
        return value

    return AfterValidator(check)


def _no_url_problem(value: str) -> str:
    if problem := url_problem(value):
        raise ValueError(f"{value!r}: {problem}")
    return value


def _relative(value: str) -> str:
    """A path relative to some base that never leaves it."""
    if not value:
        raise ValueError("empty path")
    if value.startswith("/"):
        raise ValueError(f"{value!r} is absolute; use a path relative to the project root")
    if ".." in PurePosixPath(value).parts:
        raise ValueError(f"{value!r} contains '..'")
    return value


def _dest(value: str) -> str:
    """Relative to the source tree; `../name` places a source beside it."""
    if value.startswith("/"):
        raise ValueError(f"{value!r} is absolute; dest is relative to the source tree")
    parts = PurePosixPath(value).parts
    rest = parts[1:] if parts[:1] == ("..",) else parts
    if ".." in rest:
        raise ValueError(f"{value!r} may use '..' only once, at the start")
    if parts[:1] == ("..",) and (not rest or rest[0] in RESERVED_DEST_ROOTS):
        raise ValueError(f"{value!r} is reserved by the build sandbox")
    return value


def _spdx(value: str) -> bool:
    return bool(value.strip()) and re.fullmatch(r"[A-Za-z0-9.+:() -]+", value) is not None


def _not_reserved_env(value: str) -> bool:
    return not value.startswith("LW_") and value not in RESERVED_ENV


Name = Annotated[str, checked(NAME_PATTERN, "{!r} is not a valid name (" + NAME_PATTERN + ")")]
Sha256Str = Annotated[str, checked(is_sha256, "{!r} is not 64 lowercase hex digits")]
GitRev = Annotated[str, checked(is_git_rev, "{!r} is not a full 40-hex commit id (tags and branches are refused)")]
HttpUrl = Annotated[
    str, checked(r"https?://[^\s/?#]+[^\s]*", "{!r} is not an http(s) URL"), AfterValidator(_no_url_problem)
]
GitUrl = Annotated[
    str,
    checked(r"(https?|git|file)://[^\s]+", "{!r} is not an http(s), git or file URL"),
    AfterValidator(_no_url_problem),
]
RelPath = Annotated[str, AfterValidator(_relative)]
Dest = Annotated[str, AfterValidator(_dest)]
EnvName = Annotated[
    str,
    checked(r"[A-Za-z_][A-Za-z0-9_]*", "{!r} is not a valid shell variable name"),
    checked(_not_reserved_env, "{!r} is set by lwrecipe and cannot be overridden"),
]
ToolName = Annotated[str, checked(r"[A-Za-z0-9_+][A-Za-z0-9._+-]*", "{!r} is not a bare program name")]
Version = Annotated[
    str, checked(r"[A-Za-z0-9][A-Za-z0-9._+~-]*", "{!r} is not a version (letters, digits and . _ + ~ -)")
]
Spdx = Annotated[str, checked(_spdx, "{!r} is not an SPDX license expression")]
Script = Annotated[str, checked(str.strip, "must not be empty")]
DebName = Annotated[str, checked(r"[a-z0-9][a-z0-9+.-]+", "{!r} is not a Debian package name")]
DebVersion = Annotated[str, checked(r"(?:[0-9]+:)?[0-9A-Za-z][A-Za-z0-9.+~-]*", "{!r} is not a Debian version")]
DebArch = Annotated[str, checked(r"[a-z0-9][a-z0-9-]*", "{!r} is not a Debian architecture")]
Strip = Annotated[int, Field(ge=0, le=64)]


class _Model(BaseModel):
    # validators are built when a recipe is first validated, not at import:
    # commands whose recipes are in recipecache never need them
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


class Package(_Model):
    name: Name
    version: Version
    license: Spdx
    homepage: HttpUrl | None = None
    description: str = ""


class UrlSource(_Model):
    url: HttpUrl
    mirrors: list[HttpUrl] = []
    sha256: Sha256Str
    strip: Strip = 0
    dest: Dest = "."
    name: Name | None = None
    unpack: bool = True
    filename: ToolName | None = None

    @property
    def basename(self) -> str:
        return self.filename or self.url.rstrip("/").rsplit("/", 1)[-1].split("?")[0]


class GitSource(_Model):
    git: GitUrl
    rev: GitRev
    strip: Strip = 0
    dest: Dest = "."
    name: Name | None = None
    unpack: bool = True


class PathSource(_Model):
    path: RelPath
    dest: Dest = "."
    name: Name | None = None
    unpack: bool = True


class DebSource(_Model):
    """A Debian binary package, unpacked as `dpkg-deb -x` does into a merged-/usr tree."""

    deb: DebName
    version: DebVersion
    arch: DebArch
    url: HttpUrl
    mirrors: list[HttpUrl] = []
    sha256: Sha256Str
    dest: Dest = "."

    @property
    def name(self) -> None:
        return None  # packages merge into one tree; nothing refers to one of them

    @property
    def unpack(self) -> bool:
        return True

    @property
    def strip(self) -> int:
        return 0

    @property
    def basename(self) -> str:
        """apt's own file name (an epoch's ':' as %3a): a copy of /var/cache/apt/archives is a mirror."""
        return f"{self.deb}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


class DebianRequest(_Model):
    """What `lwrecipe debs resolve` was asked for; `debs update` resolves it again."""

    packages: list[DebName]
    arch: DebArch | None = None
    on: Name | None = None  # an environment recipe whose packages count as installed


class FilePatch(_Model):
    file: RelPath
    strip: Strip = 1


class UrlPatch(_Model):
    url: HttpUrl
    mirrors: list[HttpUrl] = []
    sha256: Sha256Str
    strip: Strip = 1


class SourcePatch(_Model):
    source: Name
    path: RelPath
    strip: Strip = 1


def _tag(kinds: tuple[str, ...], over: dict[str, str] | None = None) -> Any:
    """Which of `kinds` a table is; `over` names keys that decide alone (a deb source has a url too)."""

    def pick(value: Any) -> str | None:
        if not isinstance(value, dict):
            return None
        for key, kind in (over or {}).items():
            if key in value:
                return kind
        present = [k for k in kinds if k in value]
        return present[0] if len(present) == 1 else None

    return pick


Source = Annotated[
    Annotated[UrlSource, Tag("url")]
    | Annotated[GitSource, Tag("git")]
    | Annotated[PathSource, Tag("path")]
    | Annotated[DebSource, Tag("deb")],
    Discriminator(
        _tag(("url", "git", "path"), over={"deb": "deb"}),
        custom_error_type="source_kind",
        custom_error_message="a source needs exactly one of url, git, path or deb",
    ),
]
Patch = Annotated[
    Annotated[FilePatch, Tag("file")] | Annotated[UrlPatch, Tag("url")] | Annotated[SourcePatch, Tag("source")],
    Discriminator(
        _tag(("file", "url", "source")),
        custom_error_type="patch_kind",
        custom_error_message="a patch needs exactly one of file, url or source",
    ),
]
UNION_TAGS = {"sources": {"url", "git", "path", "deb"}, "patches": {"file", "url", "source"}}


class Build(_Model):
    depends: list[Name] = []
    host_tools: list[ToolName] = []
    env: dict[EnvName, str] = {}
    environment: Name | None = None  # a recipe whose output is the build's root file system
    bootstrap: bool = False  # the build's root file system is its own unpacked sources
    script: Script
    source_date_epoch: Annotated[int, Field(ge=0, le=2**32 - 1)] = DEFAULT_SOURCE_DATE_EPOCH
    # seconds the build may run; lowers `build --timeout`, never raises it; not in the key
    timeout: Annotated[float, Field(gt=0, le=10**7, allow_inf_nan=False)] | None = None


class RecipeDoc(_Model):
    schema_: Literal[1] = Field(alias="schema")
    package: Package
    sources: list[Source] = []
    patches: list[Patch] = []
    build: Build
    debian: DebianRequest | None = None


def cross_field_problems(doc: RecipeDoc) -> list[Problem]:
    """Checks across fields that pydantic's per-field validators cannot see."""
    problems: list[Problem] = []
    names: dict[str, int] = {}
    dests: dict[str, int] = {}
    for i, src in enumerate(doc.sources):
        if src.name is not None:
            if src.name in names:
                problems.append(
                    Problem(f"sources[{i}].name", f"{src.name!r} is already the name of sources[{names[src.name]}]")
                )
            names.setdefault(src.name, i)
        if isinstance(src, DebSource):
            pass  # packages are meant to share a tree, as dpkg lays them over one root
        elif src.unpack:
            dest = str(PurePosixPath(src.dest))
            if dest in dests:
                problems.append(
                    Problem(f"sources[{i}].dest", f"{src.dest!r} is already the dest of sources[{dests[dest]}]")
                )
            dests.setdefault(dest, i)
        elif not src.name:
            problems.append(Problem(f"sources[{i}].name", "required when unpack = false"))
    for i, patch in enumerate(doc.patches):
        if isinstance(patch, SourcePatch) and patch.source not in names:
            problems.append(Problem(f"patches[{i}].source", f"no source of this recipe is named {patch.source!r}"))
    if doc.package.name in doc.build.depends:
        problems.append(Problem("build.depends", f"{doc.package.name!r} depends on itself"))
    if doc.build.environment == doc.package.name:
        problems.append(Problem("build.environment", f"{doc.package.name!r} cannot be its own environment"))
    if doc.build.environment and doc.build.bootstrap:
        problems.append(Problem("build.bootstrap", "a bootstrap build runs on its own sources, not on an environment"))
    for field in ("depends", "host_tools"):
        seen: set[str] = set()
        for j, item in enumerate(getattr(doc.build, field)):
            if item in seen:
                problems.append(Problem(f"build.{field}[{j}]", f"{item!r} is listed twice"))
            seen.add(item)
    return problems
