"""Whether urllib can take a URL apart: the one check every URL that content
chose (a recipe's, a config file's, a server's answer) passes before any code
asks it for its host or port, so a bad one is an error naming where it was
written, never a traceback."""

from __future__ import annotations

from urllib.parse import urlsplit


def url_problem(url: str) -> str | None:
    """Why `url` has no host and port urllib can read (an unclosed or bad IPv6
    bracket, a port that is not a number from 0 to 65535), or None."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"not a URL: {exc}"  # "Invalid IPv6 URL", "'zz' does not appear to be an IPv4 or IPv6 address"
    try:
        _ = parts.port  # read for its check: urllib raises here
    except ValueError:
        return "bad port"
    return None
