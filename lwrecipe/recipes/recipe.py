"""The recipe file: pydantic models of schema 1, loading and validation messages.

Owns what a recipe *says*. Resolving `depends` is graph.py's job; pinning the
inputs to hashes is plan.py's. Every problem is reported as `<file>: <field>:
<what>` through RecipeError, all problems of a file at once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from ..core.digests import Sha256, is_git_rev, is_sha256, sha256_bytes
from ..core.documents import RECIPE_LIMIT, parse_toml, read_file
from ..core.errors import DocumentError, Problem, RecipeError
from ..core.urls import url_problem
from . import recipecache
from .keys import built_on

SCHEMA_VERSION = 1
DEFAULT_SOURCE_DATE_EPOCH = 315532800
"""1980-01-01T00:00:00Z: the earliest time every archive format (zip included) can hold."""

PROJECT_MARKERS = ("lwrecipe.toml", ".git")
RESERVED_ENV = frozenset({"PATH", "HOME", "TMPDIR", "SOURCE_DATE_EPOCH", "LC_ALL", "TZ"})
RESERVED_DEST_ROOTS = frozenset({"src", "out", "home", "tmp", "deps", ".lwrecipe", "build.log"})

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]*")
_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOOL_RE = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._+-]*")
_VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~-]*")
_SPDX_RE = re.compile(r"[A-Za-z0-9.+:() -]+")
_URL_RE = re.compile(r"https?://[^\s/?#]+[^\s]*")
_GIT_URL_RE = re.compile(r"(https?|git|file)://[^\s]+")


def _name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid name ([a-z0-9][a-z0-9-]*)")
    return value


def _sha256(value: str) -> str:
    if not is_sha256(value):
        raise ValueError(f"{value!r} is not 64 lowercase hex digits")
    return value


def _git_rev(value: str) -> str:
    if not is_git_rev(value):
        raise ValueError(f"{value!r} is not a full 40-hex commit id (tags and branches are refused)")
    return value


def _http_url(value: str) -> str:
    if not _URL_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not an http(s) URL")
    if problem := url_problem(value):
        raise ValueError(f"{value!r}: {problem}")
    return value


def _git_url(value: str) -> str:
    if not _GIT_URL_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not an http(s), git or file URL")
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


def _env_name(value: str) -> str:
    if not _ENV_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid shell variable name")
    if value.startswith("LW_") or value in RESERVED_ENV:
        raise ValueError(f"{value!r} is set by lwrecipe and cannot be overridden")
    return value


def _tool(value: str) -> str:
    if not _TOOL_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a bare program name")
    return value


def _version(value: str) -> str:
    if not _VERSION_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a version (letters, digits and . _ + ~ -)")
    return value


def _spdx(value: str) -> str:
    if not value.strip() or not _SPDX_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not an SPDX license expression")
    return value


def _nonempty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


Name = Annotated[str, AfterValidator(_name)]
Sha256Str = Annotated[str, AfterValidator(_sha256)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
RelPath = Annotated[str, AfterValidator(_relative)]
Dest = Annotated[str, AfterValidator(_dest)]
EnvName = Annotated[str, AfterValidator(_env_name)]
ToolName = Annotated[str, AfterValidator(_tool)]
Strip = Annotated[int, Field(ge=0, le=64)]


class _Model(BaseModel):
    # validators are built when a recipe is first validated, not at import:
    # commands whose recipes are in recipecache never need them
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


class Package(_Model):
    name: Name
    version: Annotated[str, AfterValidator(_version)]
    license: Annotated[str, AfterValidator(_spdx)]
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
    filename: Annotated[str, AfterValidator(_tool)] | None = None

    @property
    def basename(self) -> str:
        return self.filename or self.url.rstrip("/").rsplit("/", 1)[-1].split("?")[0]


class GitSource(_Model):
    git: Annotated[str, AfterValidator(_git_url)]
    rev: Annotated[str, AfterValidator(_git_rev)]
    strip: Strip = 0
    dest: Dest = "."
    name: Name | None = None
    unpack: bool = True


class PathSource(_Model):
    path: RelPath
    dest: Dest = "."
    name: Name | None = None
    unpack: bool = True


_DEB_NAME_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_DEB_VERSION_RE = re.compile(r"(?:[0-9]+:)?[0-9A-Za-z][A-Za-z0-9.+~-]*")
_DEB_ARCH_RE = re.compile(r"[a-z0-9][a-z0-9-]*")


def _deb_name(value: str) -> str:
    if not _DEB_NAME_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a Debian package name")
    return value


def _deb_version(value: str) -> str:
    if not _DEB_VERSION_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a Debian version")
    return value


def _deb_arch(value: str) -> str:
    if not _DEB_ARCH_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a Debian architecture")
    return value


DebName = Annotated[str, AfterValidator(_deb_name)]
DebArch = Annotated[str, AfterValidator(_deb_arch)]


class DebSource(_Model):
    """A Debian binary package, unpacked as `dpkg-deb -x` does into a merged-/usr tree."""

    deb: DebName
    version: Annotated[str, AfterValidator(_deb_version)]
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
_TAGS = {"sources": {"url", "git", "path", "deb"}, "patches": {"file", "url", "source"}}


class Build(_Model):
    depends: list[Name] = []
    host_tools: list[ToolName] = []
    env: dict[EnvName, str] = {}
    environment: Name | None = None  # a recipe whose output is the build's root file system
    bootstrap: bool = False  # the build's root file system is its own unpacked sources
    script: Annotated[str, AfterValidator(_nonempty)]
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


@dataclass(frozen=True)
class Recipe:
    """A validated recipe and where it came from."""

    path: Path  # absolute
    root: Path  # the project root that in-repo paths are relative to
    display: str  # how messages name the file
    doc: RecipeDoc
    file_sha256: Sha256

    @property
    def name(self) -> str:
        return self.doc.package.name

    @property
    def version(self) -> str:
        return self.doc.package.version

    @property
    def depends(self) -> list[str]:
        """The recipes whose outputs this build takes: its dependencies and its environment."""
        build = self.doc.build
        if build.environment and build.environment not in build.depends:
            return [*build.depends, build.environment]
        return build.depends

    @property
    def environment(self) -> str | None:
        return self.doc.build.environment

    @property
    def built_on(self) -> str:
        return built_on(self.doc.build.environment, self.doc.build.bootstrap)

    @property
    def pinned_root(self) -> bool:
        """Built on pinned content (an environment, or its own sources), not on host tools."""
        return bool(self.doc.build.environment or self.doc.build.bootstrap)

    def source_named(self, name: str) -> UrlSource | GitSource | PathSource | None:
        return next((s for s in self.doc.sources if s.name == name), None)


def marked_ancestor(start: Path) -> Path | None:
    """`start` or its nearest ancestor that holds lwrecipe.toml or .git."""
    for parent in [start, *start.parents]:
        if any((parent / marker).exists() for marker in PROJECT_MARKERS):
            return parent
    return None


def find_root(recipe_path: Path) -> Path:
    """The project root of a recipe: the marked ancestor, else the recipe directory's parent."""
    return marked_ancestor(recipe_path.parent) or recipe_path.parent.parent


def display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_recipe(path: Path, root: Path | None = None) -> Recipe:
    path = path.absolute()
    shown = display_path(path)
    try:
        data = read_file(path, RECIPE_LIMIT, shown)
    except DocumentError as exc:
        raise RecipeError.one(shown, exc.field, exc.message) from None
    except OSError as exc:
        raise RecipeError.one(shown, "", f"cannot read: {exc.strerror or exc}") from None
    doc = parse_recipe(data, shown)
    root = (root or find_root(path)).absolute()
    problems = _semantic_problems(doc) + _file_problems(doc, path, root)
    if problems:
        raise RecipeError(shown, problems)
    return Recipe(path=path, root=root, display=shown, doc=doc, file_sha256=sha256_bytes(data))


def parse_recipe(data: bytes, shown: str) -> RecipeDoc:
    """Parse and validate the bytes of a recipe; `shown` names it in messages.
    Bytes validated before are taken from recipecache."""
    doc = cached_document(data)
    if doc is None:
        doc = _validate(data, shown)
        recipecache.put(data, code_tag(), document_fields(doc))
    return doc


_code_tag: str | None = None


def code_tag() -> str:
    """What a cached document depends on besides the file: this module's source and pydantic's version."""
    global _code_tag
    if _code_tag is None:
        import pydantic

        code = Path(__file__).read_bytes() + pydantic.VERSION.encode()
        _code_tag = hashlib.sha256(code).hexdigest()
    return _code_tag


def cached_document(data: bytes) -> RecipeDoc | None:
    """The document these bytes validated to before, exactly as validation built it."""
    fields = recipecache.get(data, code_tag())
    if fields is None:
        return None
    try:
        return _construct(fields)
    except (KeyError, TypeError, ValueError):
        return None


def document_fields(doc: RecipeDoc) -> dict[str, Any]:
    return {
        "schema": doc.schema_,
        "package": doc.package.model_dump(),
        "build": doc.build.model_dump(),
        "sources": [[type(s).__name__, s.model_dump()] for s in doc.sources],
        "patches": [[type(p).__name__, p.model_dump()] for p in doc.patches],
        "debian": doc.debian.model_dump() if doc.debian else None,
    }


def _construct(fields: Any) -> RecipeDoc:
    models = {
        cls.__name__: cls for cls in (UrlSource, GitSource, PathSource, DebSource, FilePatch, UrlPatch, SourcePatch)
    }
    return RecipeDoc.model_construct(
        schema_=fields["schema"],
        package=Package.model_construct(**fields["package"]),
        sources=[models[kind].model_construct(**values) for kind, values in fields["sources"]],
        patches=[models[kind].model_construct(**values) for kind, values in fields["patches"]],
        build=Build.model_construct(**fields["build"]),
        debian=DebianRequest.model_construct(**fields["debian"]) if fields["debian"] else None,
    )


def _validate(data: bytes, shown: str) -> RecipeDoc:
    try:
        raw = parse_toml(data, shown)
    except DocumentError as exc:
        raise RecipeError.one(shown, exc.field, exc.message) from None
    try:
        return RecipeDoc.model_validate(raw)
    except ValidationError as exc:
        raise RecipeError(shown, [_problem(e) for e in exc.errors()]) from None


_TOML_TYPES = {str: "string", int: "integer", float: "float", bool: "boolean", list: "array", dict: "table"}
_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "bool_type": "a boolean",
    "list_type": "an array",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "float_type": "a number",
}


def _toml_type(value: Any) -> str:
    return next((n for t, n in _TOML_TYPES.items() if type(value) is t), type(value).__name__)


def format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    parts = list(loc)
    for i, part in enumerate(parts):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            continue
        elif i == 2 and parts[0] in _TAGS and part in _TAGS[parts[0]] and isinstance(parts[1], int):
            continue  # the union tag pydantic puts in the path
        else:
            out += f".{part}" if out else str(part)
    return out


def _problem(err: Any) -> Problem:
    kind, loc, value = err["type"], tuple(err["loc"]), err.get("input")
    if kind == "missing":
        message = "required"
    elif kind == "extra_forbidden":
        message = "unknown key"
    elif kind in _EXPECTED:
        message = f"expected {_EXPECTED[kind]}, got {_toml_type(value)}"
    elif kind == "literal_error" and loc == ("schema",):
        message = f"unsupported schema {value!r} (this lwrecipe reads {SCHEMA_VERSION})"
    elif kind == "value_error":
        message = str(err["ctx"]["error"])
    elif kind in ("greater_than_equal", "less_than_equal"):
        bound = err["ctx"].get("ge", err["ctx"].get("le"))
        message = f"{value!r} must be {'>=' if kind == 'greater_than_equal' else '<='} {bound}"
    else:
        message = err["msg"]
    return Problem(format_loc(loc), message)


def _semantic_problems(doc: RecipeDoc) -> list[Problem]:
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


def _file_problems(doc: RecipeDoc, path: Path, root: Path) -> list[Problem]:
    """Checks that need the file system: the file name, and in-repo paths."""
    problems: list[Problem] = []
    if doc.package.name != path.stem:
        problems.append(Problem("package.name", f"{doc.package.name!r} must equal the file name stem {path.stem!r}"))
    in_repo = [(f"sources[{i}].path", s.path) for i, s in enumerate(doc.sources) if isinstance(s, PathSource)]
    in_repo += [(f"patches[{i}].file", p.file) for i, p in enumerate(doc.patches) if isinstance(p, FilePatch)]
    resolved_root = root.resolve()
    for field, rel in in_repo:
        target = (root / rel).resolve()
        if not target.is_relative_to(resolved_root):
            problems.append(Problem(field, f"{rel!r} resolves outside the project root"))
        elif not target.exists():
            problems.append(Problem(field, f"{rel!r} does not exist in the project ({root})"))
    return problems
