"""The shapes of the documents a remote serves, checked before anything uses them:
a build record's fields and their types (pydantic), the names index. A remote
and everything in it is untrusted (docs/security.md): what lacks a field or has
one of another type is refused here, with the field named, rather than failing
as a KeyError or TypeError wherever the field is first read.

Only the shape: what the fields mean (the key, signatures, the sandbox) is
checked by remote.parse_record and signing. The record stays the plain object
the rest of lwrecipe passes around; these models only validate it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class _Shape(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True, defer_build=True)


class BlobShape(_Shape):
    sha256: str
    size: int
    uncompressed_size: int | None = None
    files: int | None = None


class InputsShape(_Shape):
    """The key document (recipes.keys.KeyInputs.document) a record carries."""

    format: int
    name: str
    version: str
    sources: list[dict[str, str | int | bool]]
    patches: list[dict[str, str | int | bool]]
    script: str
    env: dict[str, str]
    host_tools: dict[str, dict[str, str]]
    platform: str
    source_date_epoch: int
    deps: dict[str, str]
    environment: str | None = None
    bootstrap: bool = False


class RecordShape(_Shape):
    """What parse_record requires (key, name, output_id, blob, log), and the type of
    every other field when it is there: a record from before a field existed, or
    a minimal one, is still a record."""

    key: str
    name: str
    output_id: str
    blob: BlobShape
    log: str
    version: str | None = None
    inputs: InputsShape | None = None
    recipe_sha256: str | None = None
    host_tools: dict[str, dict[str, str | None]] = {}
    sandbox: str | None = None
    environment: dict[str, str] | None = None
    build_image: str | None = None
    lwrecipe_version: str | None = None
    started: str | None = None
    duration_s: float | int | None = None
    signatures: list[Any] = []  # an entry that is not a signature counts for nothing (signing.py)
    substituted: dict[str, dict[str, str]] = {}
    executor: dict[str, Any] | None = None


def record_problem(record: dict[str, Any]) -> str | None:
    """`field: what` for the first field of `record` that is missing or of the wrong
    type; None when its shape is a build record's."""
    try:
        RecordShape.model_validate(record)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        what = "missing" if err["type"] == "missing" else f"{err['msg'][:1].lower()}{err['msg'][1:]}"
        return f"{where}: {what}"
    return None


def names_entries(document: Any) -> list[dict[str, Any]]:
    """The entries of a names/<recipe> index: `{"keys": [{"key": …}, …]}`; anything
    else in it is ignored, as the index is advisory."""
    keys = document.get("keys") if isinstance(document, dict) else None
    return [e for e in keys if isinstance(e, dict) and isinstance(e.get("key"), str)] if isinstance(keys, list) else []
