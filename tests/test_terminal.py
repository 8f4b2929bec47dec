"""terminal.printable: what of a text may reach a terminal as it is."""

from __future__ import annotations

import pytest

from lwrecipe.core.terminal import printable


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain\ttab\nnewline", "plain\ttab\nnewline"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("bell\x07", "bell\\x07"),
        ("cr\r", "cr\\r"),
        ("del\x7f", "del\\x7f"),
        ("c1\x9b", "c1\\x9b"),
        ("nul\x00", "nul\\x00"),
        ("rtl\u202efdp.exe", "rtl\\u202efdp.exe"),
        ("isolate\u2066x\u2069", "isolate\\u2066x\\u2069"),
        ("zürich", "zürich"),
    ],
)
def test_printable(text: str, shown: str) -> None:
    assert printable(text) == shown
