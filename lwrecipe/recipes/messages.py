"""Turning what pydantic and the TOML reader refuse into one-line problems.

Owns the wording of schema errors (`sources[0].sha256: expected a string, got
integer`) for recipes and for the other TOML documents validated with pydantic
(config files, lockfiles); which values are refused is schema.py's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ..core.errors import DocumentError, Problem, RecipeError
from .schema import SCHEMA_VERSION, UNION_TAGS


def recipe_error(shown: str, exc: ValidationError | DocumentError) -> RecipeError:
    """Every problem of the file `shown` that `exc` reports."""
    if isinstance(exc, DocumentError):
        return RecipeError.one(shown, exc.field, exc.message)
    return RecipeError(shown, [problem(e) for e in exc.errors()])


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


def format_loc(loc: tuple[int | str, ...]) -> str:
    """A pydantic location as the field a TOML file spells: `sources[0].sha256`."""
    out = ""
    parts = list(loc)
    for i, part in enumerate(parts):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            continue
        elif i == 2 and parts[0] in UNION_TAGS and part in UNION_TAGS[parts[0]] and isinstance(parts[1], int):
            continue  # the union tag pydantic puts in the path
        else:
            out += f".{part}" if out else str(part)
    return out


def problem(err: Mapping[str, Any]) -> Problem:
    """One pydantic error as the field it names and what is wrong, in TOML's words."""
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
