"""Turning what pydantic and the TOML reader refuse in a recipe into one-line
problems: core/messages.py's wording, plus what only a recipe has (the tags of
its source and patch unions, its schema version). Which values are refused is
schema.py's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ..core import messages
from ..core.errors import DocumentError, Problem, RecipeError
from .schema import SCHEMA_VERSION, UNION_TAGS


def recipe_error(shown: str, exc: ValidationError | DocumentError) -> RecipeError:
    """Every problem of the file `shown` that `exc` reports."""
    if isinstance(exc, DocumentError):
        return RecipeError.one(shown, exc.field, exc.message)
    return RecipeError(shown, [problem(e) for e in exc.errors()])


def _union_tag(parts: list[int | str], i: int) -> bool:
    """The tag pydantic puts in the path of a tagged union (`sources[0].url.sha256`)."""
    return i == 2 and parts[0] in UNION_TAGS and parts[i] in UNION_TAGS[parts[0]] and isinstance(parts[1], int)


def format_loc(loc: tuple[int | str, ...]) -> str:
    """A pydantic location in a recipe as the field the file spells: `sources[0].sha256`."""
    return messages.format_loc(loc, _union_tag)


def problem(err: Mapping[str, Any]) -> Problem:
    """One pydantic error in a recipe as the field it names and what is wrong."""
    loc, value = tuple(err["loc"]), err.get("input")
    if err["type"] == "literal_error" and loc == ("schema",):
        return Problem("schema", f"unsupported schema {value!r} (this lwrecipe reads {SCHEMA_VERSION})")
    return messages.problem(err, format_loc(loc))
