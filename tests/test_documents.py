"""documents.py: the bounded TOML and JSON readers. The depth pre-scan must agree
with tomllib on every valid document (nothing lwrecipe reads today is refused)
and refuse exactly past MAX_DEPTH, whatever does the nesting."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from lwrecipe.core.documents import MAX_DEPTH, MAX_JSON_DEPTH, parse_json, parse_toml
from lwrecipe.core.errors import DocumentError

REPO = Path(__file__).resolve().parent.parent


def nested(kind: str, depth: int) -> bytes:
    """A valid TOML document that nests exactly `depth` deep: tomllib's result is
    `depth` tables and arrays inside one another, the document's own table included."""
    if kind == "array":
        return b"a = " + b"[" * (depth - 1) + b"]" * (depth - 1)
    if kind == "inline":
        return b"a = " + b"{b = " * (depth - 1) + b"1" + b"}" * (depth - 1)
    if kind == "dotted":
        return b"a" + b".a" * (depth - 1) + b" = 1"
    if kind == "header":  # the table itself is one level below its name
        return b"[a" + b".a" * (depth - 2) + b"]\n"
    return b"[a" + b".a" * (depth // 2 - 1) + b"]\nb" + b".b" * (depth - depth // 2 - 1) + b" = 1\n"


@pytest.mark.parametrize("kind", ["array", "inline", "dotted", "header", "header and key"])
def test_nesting_up_to_the_limit_is_read_and_past_it_refused(kind: str) -> None:
    assert parse_toml(nested(kind, MAX_DEPTH), "x") == tomllib.loads(nested(kind, MAX_DEPTH).decode())
    with pytest.raises(DocumentError, match=f"x: nested more than {MAX_DEPTH} deep"):
        parse_toml(nested(kind, MAX_DEPTH + 1), "x")


VALID = [
    b"a = \"[[[[{{{{\"\nb = '[[['\nc = \"\"\"\n[[[\n\"\"\"\nd = '''\n{{{\n'''\n",
    b'a = """x""""\nb = [1.5, 2.5]\nc = 1979-05-27T07:32:00.999Z\n',
    b"a = ''''x'''''\n# [[[[[[ a comment\n[t] # [[[[\nb.\"c.d\".e = [ # a comment in an array\n  1,\n  [2],\n]\n",
    b'[[x.y]]\nz = {a.b = [1, {c = 2}], d = "e"}\n[[x.y]]\nz = 1\n',
    b'a = "\\"[[["\nb = "\\\\"\n[c]\n',
]


@pytest.mark.parametrize(
    "doc",
    VALID
    + sorted(p.read_bytes() for p in (REPO / "recipes").glob("*.toml"))
    + [(REPO / "lockfile.toml").read_bytes(), (REPO / "pyproject.toml").read_bytes()],
)
def test_valid_documents_read_as_tomllib_reads_them(doc: bytes) -> None:
    assert parse_toml(doc, "x") == tomllib.loads(doc.decode())


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"[" * 100_000, "nested more than"),
        (b'{"a": ' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1), "nested more than"),
        (b'"\\ud800"', "lone surrogate"),
        (b'{"\\udfff": 1}', "lone surrogate"),
        (b'"\xed\xa0\x80"', "not UTF-8"),
        (b'"\xff"', "not UTF-8"),
        (b'{"a": 1, "a": 2}', "appears twice"),
        (b"[NaN]", "NaN is not JSON"),
        (b"[-Infinity]", "-Infinity is not JSON"),
        (b"9" * 5000, "not valid JSON"),
        (b"{", "not valid JSON"),
        (b" " * 101, "larger than 100 bytes"),
    ],
)
def test_hostile_json_is_one_document_error(data: bytes, what: str) -> None:
    with pytest.raises(DocumentError, match=what) as caught:
        parse_json(data, "remote: ac/1234", 100 if len(data) == 101 else 1 << 20)
    assert str(caught.value).startswith("remote: ac/1234: ")


def test_json_within_the_limits_is_read() -> None:
    deep = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert parse_json(deep, "x", 1 << 20) is not None
    assert parse_json(b'{"a": "[[[\\"", "b": "\\u00e9"}', "x", 100) == {"a": '[[["', "b": "é"}


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max([_depth(v) for v in value.values()] or [0])
    if isinstance(value, list):
        return 1 + max([_depth(v) for v in value] or [0])
    return 0


@pytest.mark.slow
def test_the_depth_scan_agrees_with_tomllib_on_generated_documents() -> None:
    """Thousands of valid documents mixing headers, dotted keys, arrays, inline
    tables and strings or comments full of brackets: each is read exactly as tomllib
    reads it when it nests at most MAX_DEPTH deep, and refused when deeper."""
    import random

    rng = random.Random(31)
    counter = iter(range(10**9))

    def key() -> str:
        n = next(counter)
        return ".".join(f"k{n}_{i}" for i in range(rng.randint(1, 5)))

    def value(level: int) -> str:
        pick = rng.random()
        if level > 45 or pick < 0.25:
            return rng.choice(["1", '"s[{"', "'x]'", "1.5", "true", '"""a\n]"""', "'''{'''", '"\\"]"'])
        if pick < 0.6:
            return "[" + ", ".join(value(level + 1) for _ in range(rng.randint(0, 3))) + "]"
        return "{" + ", ".join(f"{key()} = {value(level + 1)}" for _ in range(rng.randint(0, 2))) + "}"

    refused = 0
    for _ in range(3000):
        lines = []
        for _ in range(rng.randint(1, 4)):
            if rng.random() < 0.3:
                lines.append(f"[{key()}] # [[")
            lines.append(f"{key()} = {value(0)}  # ]]")
        doc = "\n".join(lines) + "\n"
        expected = tomllib.loads(doc)
        if _depth(expected) > MAX_DEPTH:
            refused += 1
            with pytest.raises(DocumentError, match="nested more than"):
                parse_toml(doc.encode(), "x")
        else:
            assert parse_toml(doc.encode(), "x") == expected, doc
    assert 100 < refused < 2900  # both sides of the limit were tried
