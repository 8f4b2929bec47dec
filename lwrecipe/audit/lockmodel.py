"""The shape of a lockfile (pydantic): what lockfile.read checks before any entry is
used, so that a lockfile with a missing field or a value of the wrong type — it
is the project's, as untrusted as its recipes — is one line naming the file and
the field, never a KeyError or TypeError deep in `audit` or `build --locked`.

Only the fields lwrecipe reads are checked; a field it does not know is left
alone (the file is written by `lwrecipe lock`, possibly a newer one). The entries
stay the plain tables lockfile.py and its readers work with.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..core.errors import Problem, RecipeError


class _Shape(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True, defer_build=True)


class HostToolPin(_Shape):
    sha256: str
    version: str
    path: str = ""


class _SourcePin(_Shape):
    name: str | None = None
    strip: int
    dest: str
    unpack: bool


class UrlSourcePin(_SourcePin):
    kind: Literal["url"]
    url: str
    mirrors: list[str] = []
    sha256: str


class DebSourcePin(_SourcePin):
    kind: Literal["deb"]
    package: str
    version: str
    arch: str
    url: str
    mirrors: list[str] = []
    sha256: str


class GitSourcePin(_SourcePin):
    kind: Literal["git"]
    url: str
    rev: str
    tree_sha256: str = ""


class PathSourcePin(_SourcePin):
    kind: Literal["path"]
    path: str
    sha256: str


class _PatchPin(_Shape):
    strip: int


class FilePatchPin(_PatchPin):
    origin: Literal["file"]
    file: str
    sha256: str


class UrlPatchPin(_PatchPin):
    origin: Literal["url"]
    url: str
    sha256: str


class SourcePatchPin(_PatchPin):
    origin: Literal["source"]
    source: str
    path: str
    sha256: str = ""


SourcePin = Annotated[UrlSourcePin | DebSourcePin | GitSourcePin | PathSourcePin, Field(discriminator="kind")]
PatchPin = Annotated[FilePatchPin | UrlPatchPin | SourcePatchPin, Field(discriminator="origin")]


class Entry(_Shape):
    version: str
    license: str
    recipe: str
    recipe_sha256: str
    depends: list[str]
    key: str
    output_id: str
    platform: str
    source_date_epoch: int
    script: str
    env: dict[str, str]
    dep_outputs: dict[str, str]
    host_tools: dict[str, HostToolPin]
    sources: list[SourcePin]
    patches: list[PatchPin]
    environment: str | None = None
    bootstrap: bool = False


class LockDocument(_Shape):
    lockfile: int
    recipe: dict[str, Entry] = {}


def check(data: dict[str, Any], shown: str) -> None:
    """RecipeError (exit 2) naming every field of `data` that is missing or mistyped."""
    try:
        LockDocument.model_validate(data)
    except ValidationError as exc:
        from ..core.messages import problem

        raise RecipeError(
            shown, [Problem(_field(e["loc"]), _message(e, problem(e).message)) for e in exc.errors()]
        ) from None


def _message(err: Any, default: str) -> str:
    if err["type"] == "union_tag_not_found":
        return f"no {err['ctx']['discriminator'].strip(chr(39))}"
    if err["type"] == "union_tag_invalid":
        return f"unknown {err['ctx']['discriminator'].strip(chr(39))} {err['ctx']['tag']!r}"
    return default


def _field(loc: tuple[Any, ...]) -> str:
    """`recipe.pkg.sources[0].sha256`: pydantic's location without the union tag it
    puts after a list index (`sources[0].url.sha256`)."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif (
            i >= 2
            and isinstance(loc[i - 1], int)
            and loc[i - 2] in ("sources", "patches")
            and part in ("url", "deb", "git", "path", "file", "source")
        ):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out
