"""What of a text may reach a terminal as it is: every character a terminal acts
on — C0 controls but tab and newline, DEL, C1 controls, the bidirectional
overrides and isolates — is shown escaped instead (`\\x1b`, `\\u202e`).

Build output, recipe fields and remote documents are not lwrecipe's: printed raw
they could write the clipboard (OSC 52), set the window title, move the cursor
over earlier lines or reorder what a line seems to say. Every printer of the
command line goes through `printable`; nothing here prints.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator

_ACTIVE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0x0D:
        return "\\r"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every character a terminal would act on escaped."""
    return _ACTIVE.sub(_escape, text)


def printable_bytes(chunks: Iterable[bytes]) -> Iterator[str]:
    """The printable text of a byte stream (a log), chunk by chunk: UTF-8 decoded
    across chunk boundaries, bytes that are not UTF-8 shown as `\\xNN`."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")
    for chunk in chunks:
        yield printable(decoder.decode(chunk))
    yield printable(decoder.decode(b"", final=True))
