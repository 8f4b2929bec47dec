"""core.errors.redact: no password of a URL reaches a message, whatever its shape."""

from __future__ import annotations

import time

import pytest

from lwrecipe.core.errors import redact
from lwrecipe.inputs.web import HttpError


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("GET http://alice:hunter2@host/x: 401", "GET http://alice:***@host/x: 401"),
        (
            "through proxy socks5://bob:wrong@127.0.0.1:1080 refused",
            "through proxy socks5://bob:***@127.0.0.1:1080 refused",
        ),
        ("a=https://u:p@a/ b=http://v:q@b/", "a=https://u:***@a/ b=http://v:***@b/"),
        ("no scheme: ://u:p@h/", "no scheme: ://u:***@h/"),
        ("empty user http://:secret@h", "empty user http://:***@h"),
        # an unencoded @ in the password: a URL parser splits at the last one
        ("http://u:p@ss@host/path", "http://u:***@host/path"),
        # quotes and query characters in the password are the password's, not its end
        ("http://u:pa'ss@host", "http://u:***@host"),
        ('http://u:pa"ss@host', "http://u:***@host"),
        ("http://u:pa?ss@host", "http://u:***@host"),
        ("'http://u:p@host'", "'http://u:***@host'"),
        # nothing to hide
        ("http://user@host/x", "http://user@host/x"),
        ("http://host:8080/x", "http://host:8080/x"),
        ("http://host:8080 user@example.org", "http://host:8080 user@example.org"),
        ("plain text: a@b c:d", "plain text: a@b c:d"),
    ],
)
def test_redact(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_redact_long_text_in_linear_time() -> None:
    # a build log of colons and URLs without an @: every attempt stops at the next / or space
    text = "://" + "a:" * 200_000 + " " + "://x:y" * 50_000 + "x" * 200_000
    start = time.monotonic()
    assert redact(text) == text
    assert time.monotonic() - start < 2


def test_http_error_messages_are_redacted_by_the_same_rule() -> None:
    assert str(HttpError("proxy http://u:p@ss@proxy:3128 refused")) == "proxy http://u:***@proxy:3128 refused"
