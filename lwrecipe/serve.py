"""Serving a built runtime site to a browser: `lwrecipe serve`.

A small static file server with what Linux/Wasm needs from it: the
cross-origin isolation headers (SharedArrayBuffer requires
`Cross-Origin-Opener-Policy: same-origin` and
`Cross-Origin-Embedder-Policy: require-corp`), `application/wasm` for .wasm
(WebAssembly.instantiateStreaming insists on it), and single-range requests.

What it serves is content lwrecipe does not control (a build's output, a
directory a stranger's build wrote), so every file is opened below the served
root held open as a directory fd, following a link only while every step of it
stays below the root (safefs `open_inside`): a site's relative links work, a link
out to a host file is refused (403), and a directory listing shows only what
could be served.
"""

from __future__ import annotations

import email.utils
import html
import io
import mimetypes
import os
import re
import shutil
import stat
import sys
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from .core.safefs import Beneath, LinkRefused

ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
TYPES = {
    ".wasm": "application/wasm",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".gz": "application/gzip",
    ".cpio": "application/octet-stream",
    ".json": "application/json",
}
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) of a single `Range: bytes=` header, inclusive; None when it
    cannot be satisfied. Multiple ranges are not supported (ValueError)."""
    m = _RANGE.match(header.strip())
    if m is None:
        raise ValueError(header)
    first, last = m.groups()
    if first == "" and last == "":
        raise ValueError(header)
    if first == "":
        n = int(last)
        return (max(0, size - n), size - 1) if n and size else None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    return (start, end) if start <= end and start < size else None


class SiteHandler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **TYPES}
    quiet = False

    def end_headers(self) -> None:
        for name, value in ISOLATION_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Accept-Ranges", "bytes")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        if not self.quiet:
            super().log_message(format, *args)

    def guess_type(self, path: str | os.PathLike[str]) -> str:
        ext = os.path.splitext(str(path))[1].lower()
        return TYPES.get(ext) or mimetypes.guess_type(str(path))[0] or "application/octet-stream"

    root: Beneath  # the served directory, held open (set by make_server)
    _remaining: int | None = None  # bytes of a range still to send; None: the whole body

    def _parts(self, path: str) -> list[str] | None:
        """The URL's path as names below the root; None for `..`, NUL or `/` in a name."""
        names = [unquote(p, errors="surrogateescape") for p in path.split("/")]
        if any(n == ".." or "\0" in n or "/" in n for n in names):
            return None
        return [n for n in names if n not in ("", ".")]

    def _open(self, parts: list[str], flags: int = os.O_RDONLY) -> int | None:
        """A descriptor for `parts` below the root (None, with the error sent, if refused or
        missing). O_NONBLOCK: a FIFO in the tree must not hold a thread forever."""
        try:
            return self.root.open_inside("/".join(parts), flags | os.O_NONBLOCK)
        except LinkRefused:
            self.log_message("refused %s: a link leads out of the served directory", self.path)
            self.send_error(HTTPStatus.FORBIDDEN, "A link leads out of the served directory")
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
        return None

    def send_head(self) -> Any:
        try:
            url = urlsplit(self.path)
        except ValueError:  # `//[::1`: a request target urllib cannot take apart
            self.send_error(HTTPStatus.BAD_REQUEST, "Bad request target")
            return None
        parts = self._parts(url.path)
        if parts is None:
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        fd = self._open(parts)
        if fd is None:
            return None
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            os.close(fd)
            if not url.path.endswith("/"):
                self.send_response(HTTPStatus.MOVED_PERMANENTLY)
                self.send_header("Location", url._replace(path=url.path + "/").geturl())
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            for index in ("index.html", "index.htm"):
                try:
                    fd = self.root.open_inside("/".join([*parts, index]), os.O_RDONLY | os.O_NONBLOCK)
                except OSError:
                    continue
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    return self._file(fd, index)
                os.close(fd)
            return self._listing(parts)
        if not stat.S_ISREG(st.st_mode) or url.path.endswith("/"):
            os.close(fd)
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        return self._file(fd, parts[-1])

    def _file(self, fd: int, name: str) -> Any:
        """Headers for the regular file open as `fd`, a 304 or 416, or a range; the file
        object to send (None when there is nothing more to send)."""
        fh = os.fdopen(fd, "rb")
        st = os.fstat(fd)
        size = st.st_size
        modified = email.utils.formatdate(st.st_mtime, usegmt=True)
        since = self.headers.get("If-Modified-Since")
        if since and "If-None-Match" not in self.headers:
            try:
                fresh = email.utils.parsedate_to_datetime(since).timestamp() >= int(st.st_mtime)
            except (TypeError, ValueError, IndexError, OverflowError):
                fresh = False
            if fresh:
                fh.close()
                self.send_response(HTTPStatus.NOT_MODIFIED)
                self.end_headers()
                return None
        span: tuple[int, int] | None = (0, size - 1)
        header = self.headers.get("Range")
        if header:
            try:
                span = byte_range(header, size)
            except ValueError:
                header = None  # unsupported forms get the whole file
        if header and span is None:
            fh.close()
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        first, last = span if header and span else (0, size - 1)
        fh.seek(first)
        self.send_response(HTTPStatus.PARTIAL_CONTENT if header else HTTPStatus.OK)
        self.send_header("Content-Type", self.guess_type(name))
        if header:
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Content-Length", str(last - first + 1))
        self.send_header("Last-Modified", modified)
        self.end_headers()
        self._remaining = last - first + 1
        return fh

    def _listing(self, parts: list[str]) -> Any:
        """An HTML index of the directory: only the names that could be served (a link
        out of the root, a dangling one, a FIFO are left out)."""
        rows = []
        with self.root.opendir_inside("/".join(parts)) as here, os.scandir(here.fd) as it:
            names = sorted(e.name for e in it)
        for name in names:
            try:  # resolved from the root, as a request for it would be
                fd = self.root.open_inside("/".join([*parts, name]), os.O_RDONLY | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                mode = os.fstat(fd).st_mode
            finally:
                os.close(fd)
            if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
                shown = name + ("/" if stat.S_ISDIR(mode) else "")
                rows.append(
                    f'<li><a href="{quote(shown, errors="surrogateescape")}">{html.escape(shown, quote=False)}</a></li>'
                )
        title = html.escape("/" + "/".join(f"{p}/" for p in parts), quote=False)
        body = (
            f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>'
            f"<body><h1>{title}</h1><ul>\n{chr(10).join(rows)}\n</ul></body></html>\n"
        ).encode("utf-8", "surrogateescape")
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._remaining = None
        return io.BytesIO(body)

    def copyfile(self, source: Any, outputfile: Any) -> None:
        remaining = self._remaining
        if remaining is None:
            shutil.copyfileobj(source, outputfile)
            return
        while remaining > 0:
            chunk = source.read(min(1 << 16, remaining))
            if not chunk:
                break
            outputfile.write(chunk)
            remaining -= len(chunk)
        self._remaining = None


def make_server(root: Path, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False) -> ThreadingHTTPServer:
    """A server of `root` (opened here, as given: the user chose it; what is below it
    is content). Closing the server closes the root."""
    held = Beneath(root)
    handler = type("Handler", (SiteHandler,), {"quiet": quiet, "root": held})

    def factory(*args: Any, **kwargs: Any) -> SiteHandler:
        made: SiteHandler = handler(*args, directory=str(root), **kwargs)
        return made

    try:
        server = _Server((host, port), factory)
    except OSError:
        held.close()
        raise
    server.held = held
    server.daemon_threads = True
    return server


class _Server(ThreadingHTTPServer):
    held: Beneath

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer is not an error of the server: no traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        self.held.close()
