"""The wording of what pydantic refuses in a TOML document: one `Problem` per
error, naming the field as the file spells it (`remote[0].url`) and saying what
is wrong in TOML's words (`expected a string, got integer`). Which values are
refused is each schema's; recipes add their own cases (recipes/messages.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .errors import Problem

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

Hidden = Callable[[list[int | str], int], bool]
"""Whether the part at an index of a location is pydantic's, not the file's."""


def toml_type(value: Any) -> str:
    return next((n for t, n in _TOML_TYPES.items() if type(value) is t), type(value).__name__)


def format_loc(loc: tuple[int | str, ...], hidden: Hidden | None = None) -> str:
    """A pydantic location as the field a TOML file spells: `sources[0].sha256`."""
    out = ""
    parts = list(loc)
    for i, part in enumerate(parts):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]" or (hidden is not None and hidden(parts, i)):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def problem(err: Mapping[str, Any], field: str | None = None) -> Problem:
    """One pydantic error as the field it names (`field`, else its location) and
    what is wrong."""
    kind, value = err["type"], err.get("input")
    if kind == "missing":
        message = "required"
    elif kind == "extra_forbidden":
        message = "unknown key"
    elif kind in _EXPECTED:
        message = f"expected {_EXPECTED[kind]}, got {toml_type(value)}"
    elif kind == "value_error":
        message = str(err["ctx"]["error"])
    elif kind in ("greater_than_equal", "less_than_equal"):
        bound = err["ctx"].get("ge", err["ctx"].get("le"))
        message = f"{value!r} must be {'>=' if kind == 'greater_than_equal' else '<='} {bound}"
    else:
        message = err["msg"]
    return Problem(format_loc(tuple(err["loc"])) if field is None else field, message)
