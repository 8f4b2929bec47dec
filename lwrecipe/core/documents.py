"""Reading a document lwrecipe does not control — a recipe, a project's or the
user's config, a lockfile, anything a remote serves — with bounds: a size cap on
the bytes actually read, strict UTF-8, a nesting-depth limit checked before the
parser runs, and every failure one DocumentError naming the document.

Why a pre-scan and not only `except RecursionError`: tomllib recurses once per
`[` or `{` (RecursionError, harmless to catch), but a dotted key or table header
of n parts costs it O(n²) memory (every prefix of the key becomes a tuple kept
until the next table header): `a.a.a…` 100 000 deep takes tens of GiB before any
exception. So the nesting — arrays, inline tables and key parts together — is
counted by a linear scan over TOML's tokens (strings and comments skipped, the
way tomllib lexes them) and refused past MAX_DEPTH before tomllib sees the text;
the parser's own RecursionError and MemoryError stay caught as a second line.
JSON is scanned the same way: json.loads recurses in C (RecursionError), and a
document deep enough to pass it still breaks whatever walks it next.

Only the standard library: every package may use this module.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Any

from .errors import DocumentError

MAX_DEPTH = 32  # arrays, tables and key parts; lwrecipe's own documents need fewer than 8
MAX_JSON_DEPTH = 64  # a build record's key document and an in-toto statement nest about 6 deep
RECIPE_LIMIT = 1 << 20  # the largest recipe of this repository is 43 KB
CONFIG_LIMIT = 1 << 20
LOCKFILE_LIMIT = 16 << 20  # a release's lockfile holds every recipe's inputs: tens of KB per recipe


def read_file(path: Path, limit: int, shown: str | None = None) -> bytes:
    """The bytes of the regular file at `path`, refused past `limit` bytes (counted
    on what is read, not on what stat says) and when it is not a regular file (a
    FIFO would block the reader, a device never end). FileNotFoundError passes
    through: a missing file means something different to each caller."""
    where = shown or str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise DocumentError(where, f"cannot read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise DocumentError(where, "not a regular file")
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise DocumentError(where, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise DocumentError(where, f"larger than {limit} bytes; refused")
    return data


def read_toml_file(path: Path, limit: int, shown: str | None = None) -> dict[str, Any]:
    where = shown or str(path)
    return parse_toml(read_file(path, limit, where), where)


def read_toml_text(path: Path, limit: int, shown: str | None = None) -> str:
    """The text of a TOML file that parse_toml accepts: for code that edits it with a
    parser of its own (tomlkit), which would recurse through hostile nesting."""
    where = shown or str(path)
    text = decode(read_file(path, limit, where), where)
    parse_toml(text.encode(), where)
    return text


def decode(data: bytes, where: str) -> str:
    """`data` as strict UTF-8: no invalid sequences, no encoded surrogates."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(where, f"not UTF-8 (byte {exc.start})") from None


def parse_toml(data: bytes, where: str) -> dict[str, Any]:
    """The TOML document in `data`; DocumentError with tomllib's `line L, column C:
    what` (or the depth limit) otherwise. The caller has bounded its size."""
    text = decode(data, where)
    _check_toml_depth(text, where)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DocumentError(where, _toml_message(str(exc))) from None
    except (RecursionError, MemoryError):
        raise DocumentError(where, f"nested more than {MAX_DEPTH} deep; refused") from None
    except ValueError as exc:  # int() past sys.get_int_max_str_digits, a date out of range, ...
        raise DocumentError(where, f"a value cannot be read: {exc}") from None


def parse_json(data: bytes, where: str, limit: int) -> Any:
    """The JSON document in `data`, received from someone else: at most `limit`
    bytes, strict UTF-8, at most MAX_JSON_DEPTH deep, no duplicate keys, no NaN or
    Infinity, no lone surrogate (json.loads takes `"\\ud800"`; it breaks every
    later encode, canonical JSON for a signature check included)."""
    if len(data) > limit:
        raise DocumentError(where, f"larger than {limit} bytes; refused")
    text = decode(data, where)
    _check_json_depth(text, where)
    try:
        value = json.loads(text, object_pairs_hook=_unique, parse_constant=_no_constant)
    except RecursionError:
        raise DocumentError(where, f"nested more than {MAX_JSON_DEPTH} deep; refused") from None
    except ValueError as exc:  # JSONDecodeError, a duplicate key, an integer of too many digits
        raise DocumentError(where, f"not valid JSON: {exc}") from None
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise DocumentError(where, "holds a lone surrogate (\\ud800-\\udfff), which is not text; refused") from None
    return value


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are distinct: with a duplicate, parsers disagree on which
    value counts, and a signature checked by one reader would cover another's."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"key {key[:40]!r} appears twice")
            seen.add(key)
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)


def _check_json_depth(text: str, where: str) -> None:
    depth = 0
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise DocumentError(where, f"nested more than {MAX_JSON_DEPTH} deep; refused")
        elif token in "]}":
            depth -= 1


# TOML's tokens as tomllib reads them: multi-line strings first (their closing
# delimiter may be followed by one or two more quotes, which belong to the
# string), then one-line strings, comments, and the characters that shape the
# document. Anything else (bare keys, numbers, dates, spaces) is skipped.
_TOML_TOKEN = re.compile(
    r'''"""(?:[^"\\]|\\[\s\S]|"(?!""))*"""(?:""?)?'''
    r"""|'''[\s\S]*?'''(?:''?)?"""
    r'''|"(?:[^"\\\n]|\\.)*"'''
    r"""|'[^'\n]*'"""
    r"|#[^\n]*"
    r"|[\[\]{}=,.\n]"
)


def _check_toml_depth(text: str, where: str) -> None:
    """Refuses a document that nests more than MAX_DEPTH tables and arrays deep (the
    depth of what tomllib would return), counting each part of a dotted key or
    table header, each array, and the keys of each inline table. Agrees
    with tomllib on every valid prefix of a document, so whatever tomllib would
    reach is counted; on an invalid one it may refuse for depth instead of saying
    where the syntax breaks."""
    section = 0  # parts of the current [table] header
    stack: list[tuple[str, int]] = []  # open arrays and inline tables, with their depth
    mode, parts, depth = "key", 1, 0  # key: reading a key; value: after `=`; header: in [...]; rest: after it

    def base() -> int:
        return stack[-1][1] if stack else (0 if mode == "header" else section)

    def check(level: int) -> None:
        if level > MAX_DEPTH:
            raise DocumentError(where, f"nested more than {MAX_DEPTH} deep; refused")

    for match in _TOML_TOKEN.finditer(text):
        token = match.group()
        if token == "\n":
            if not stack:
                mode, parts = "key", 1
        elif token == ".":
            if mode in ("key", "header"):
                parts += 1
                check(base() + parts)
        elif token == "=":
            if mode == "key":
                depth = base() + parts
                check(depth)
                mode = "value"
        elif token == "[":
            if mode == "value":
                depth += 1
                check(depth)
                stack.append(("[", depth))
            elif mode == "key" and not stack:
                mode, parts = "header", 1
        elif token == "{":
            if mode == "value":  # the table is the key's value: its own keys are the next level
                check(depth + 1)
                stack.append(("{", depth))
                mode, parts = "key", 1
        elif token == ",":
            if stack and stack[-1][0] == "{":
                mode, parts = "key", 1
            elif stack:
                depth = stack[-1][1]
        elif token in "]}":
            if mode == "header" and token == "]":
                section, mode = parts, "rest"
                check(section + 1)  # the table's own level, even while it is empty
            elif stack:
                stack.pop()
                mode, depth = "value", (stack[-1][1] if stack else depth)


def _toml_message(text: str) -> str:
    """tomllib's message as `line L, column C: what` (or `end of file: what`)."""
    match = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", text, re.S)
    if match:
        what, line, col = match.groups()
        return f"line {line}, column {col}: {what[:1].lower()}{what[1:]}"
    match = re.fullmatch(r"(.*) \(at end of document\)", text, re.S)
    if match:
        return f"end of file: {match.group(1)[:1].lower()}{match.group(1)[1:]}"
    return text
