"""HTTP/1.1 for downloads and remote caches, on the standard library's http.client.

One Client per command holds keep-alive connections per origin (threads may share
it), follows redirects for GET and HEAD (credentials are not sent to another
origin), takes proxies from the environment (http_proxy, https_proxy, all_proxy,
no_proxy; http:// proxies, CONNECT for https), and has a connect and a read
timeout. TLS is verified against the system's certificates (SSL_CERT_FILE and
SSL_CERT_DIR are honoured). Bodies are the raw bytes: no Content-Encoding is ever
decoded, so a hash sees what the server sent. A file body is sent from one
reused buffer, with progress reported per MiB.

It replaced httpx (docs/performance.md): httpx with httpcore cost 90-130 ms of
imports and an SSL context per network command, a pull spent most of its CPU in
h11's per-read parsing, and an upload copied each MiB into a new bytes object.
"""

from __future__ import annotations

import base64
import http.client
import os
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

READ = 1 << 20  # at most this many bytes per body read
# Bytes per read and send of a file body, one buffer reused. Not sendfile(2):
# nginx on loopback received 1 GiB in 1.4-1.6 s from sendfile against 1.0-1.3 s
# from plain sends of the same file (docs/performance.md).
SEND = 1 << 20
MAX_REDIRECTS = 10
REDIRECTS = frozenset({301, 302, 303, 307, 308})


class HttpError(Exception):
    """The exchange failed before a whole response arrived. `retry` says whether
    trying again can help (a dropped connection, a timeout) or not (a bad URL,
    too many redirects, a certificate that does not verify)."""

    def __init__(self, reason: str, retry: bool = True, timeout: bool = False) -> None:
        super().__init__(reason)
        self.retry = retry
        self.timeout = timeout


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int
    proxy: str | None  # "host:port" of an http:// proxy, or None for a direct connection

    @property
    def netloc(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def split(url: str) -> tuple[Origin, str]:
    """The origin of an http(s) URL (without a proxy) and its request target."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError(f"not an http(s) URL: {url}", retry=False)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise HttpError(f"bad port in {url}", retry=False) from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Origin(parts.scheme, parts.hostname, port, None), target


def _env(env: Mapping[str, str], name: str) -> str:
    return env.get(name) or env.get(name.upper()) or ""


def bypasses_proxy(host: str, port: int, no_proxy: str) -> bool:
    """no_proxy: `*`, or comma-separated host names, domain suffixes (`.example.com`
    or `example.com` for it and its subdomains), IP addresses, each with an optional :port."""
    host = host.lower()
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, want_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if want_port and want_port != str(port):
            continue
        name = name.strip("[]").lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


def proxy_for(origin: Origin, env: Mapping[str, str]) -> tuple[str, str | None] | None:
    """The proxy ("host:port", Proxy-Authorization value or None) the environment
    names for this origin, or None for a direct connection."""
    value = _env(env, f"{origin.scheme}_proxy") or _env(env, "all_proxy")
    if not value or bypasses_proxy(origin.host, origin.port, _env(env, "no_proxy")):
        return None
    parts = urlsplit(value if "://" in value else f"http://{value}")
    if parts.scheme != "http" or not parts.hostname:
        raise HttpError(f"proxy {value!r}: only http:// proxies are supported", retry=False)
    try:
        port = parts.port or 80
    except ValueError:
        raise HttpError(f"proxy {value!r}: bad port", retry=False) from None
    auth = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        auth = "Basic " + base64.b64encode(pair).decode()
    return f"{parts.hostname}:{port}", auth


class _Timeouts:
    """Connects within the connect timeout, then waits at most the read timeout
    for each socket operation."""

    read_timeout: float
    sock: socket.socket

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.sock.settimeout(self.read_timeout)


class _Plain(_Timeouts, http.client.HTTPConnection):
    pass


class _Tls(_Timeouts, http.client.HTTPSConnection):
    pass


def _reason(exc: BaseException) -> HttpError:
    """One of _FAILURES as a reason a person can read."""
    if isinstance(exc, TimeoutError):
        return HttpError("timed out", timeout=True)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return HttpError(f"TLS certificate not trusted: {exc.verify_message}", retry=False)
    if isinstance(exc, socket.gaierror):
        return HttpError(f"cannot resolve the host name: {exc.strerror or exc}")
    if isinstance(exc, http.client.IncompleteRead):
        return HttpError("connection closed before the whole body arrived")
    if isinstance(exc, ConnectionRefusedError):
        return HttpError("cannot connect: connection refused")
    text = getattr(exc, "strerror", None) or str(exc)
    return HttpError(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


_FAILURES = (OSError, http.client.HTTPException)


def _quiet(conn: http.client.HTTPConnection) -> bool:
    """An idle connection with nothing to read: anything readable on it (the
    server's close, or bytes nobody asked for) means it cannot carry a request."""
    if conn.sock is None:
        return False
    poller = select.poll()
    poller.register(conn.sock, select.POLLIN)
    return not poller.poll(0)


class Response:
    """A response whose head has arrived; the body is read from it."""

    def __init__(self, raw: http.client.HTTPResponse, url: str, method: str) -> None:
        self.raw = raw
        self.method = method
        self.status = raw.status
        self.headers = raw.headers  # case-insensitive get()
        self.url = url

    def iter_raw(self, size: int = READ) -> Iterator[bytes]:
        """The body as it arrives: each piece is what one socket read gave (at most
        size bytes), so a slow server still shows progress and a fast one gives
        large pieces. A body shorter than its Content-Length is an HttpError."""
        while True:
            try:
                piece = self.raw.read1(size)
            except _FAILURES as exc:
                raise _reason(exc) from None
            if piece:
                yield piece
                continue
            if self.raw.length and self.method != "HEAD":
                raise HttpError("connection closed before the whole body arrived")
            try:
                self.raw.read()  # the end: the response is complete and its connection reusable
            except _FAILURES as exc:
                raise _reason(exc) from None
            return

    def read(self, limit: int) -> bytes | None:
        """The whole body, or None when it is longer than limit bytes."""
        data = bytearray()
        for piece in self.iter_raw(min(READ, limit + 1)):
            data += piece
            if len(data) > limit:
                return None
        return bytes(data)


class Client:
    def __init__(self, connect_timeout: float = 15.0, read_timeout: float = 60.0,
                 env: Mapping[str, str] | None = None) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._credentials: dict[tuple[str, str, int], dict[str, str]] = {}
        self.env = os.environ if env is None else env
        self._idle: dict[Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    def add_credential(self, url: str, name: str, value: str) -> None:
        """A header sent on every request to url's origin (scheme, host, port) and to
        no other, not after a redirect either. A proxy for plain http sees it, as
        it sees the whole request; through a proxy, https hides it (CONNECT)."""
        origin, _ = split(url)
        self._credentials.setdefault((origin.scheme, origin.host, origin.port), {})[name] = value

    def _tls_context(self) -> ssl.SSLContext:
        with self._lock:
            if self._tls is None:  # built on first use: plain-http commands never pay for it
                self._tls = ssl.create_default_context()
            return self._tls

    def _connect(self, origin: Origin, proxy_auth: str | None) -> http.client.HTTPConnection:
        host, port = origin.host, origin.port
        if origin.proxy is not None:
            host, port_text = origin.proxy.rsplit(":", 1)
            port = int(port_text)
        conn: http.client.HTTPConnection
        if origin.scheme == "https":
            conn = _Tls(host, port, timeout=self.connect_timeout, context=self._tls_context())
            if origin.proxy is not None:
                conn.set_tunnel(origin.host, origin.port,
                                {"Proxy-Authorization": proxy_auth} if proxy_auth else None)
        else:
            conn = _Plain(host, port, timeout=self.connect_timeout)
        conn.read_timeout = self.read_timeout  # type: ignore[attr-defined]
        return conn

    def _take(self, origin: Origin) -> http.client.HTTPConnection | None:
        """An idle connection to origin that the server has not closed, if any."""
        while True:
            with self._lock:
                conns = self._idle.get(origin)
                conn = conns.pop() if conns else None
            if conn is None or _quiet(conn):
                return conn
            conn.close()

    def _give_back(self, origin: Origin, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.setdefault(origin, []).append(conn)

    def _send(self, conn: http.client.HTTPConnection, method: str, target: str, headers: Mapping[str, str],
              body: bytes | Path | None, sent: Callable[[int], None] | None) -> http.client.HTTPResponse:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if isinstance(body, Path):
            with body.open("rb", buffering=0) as src:
                size = os.fstat(src.fileno()).st_size
                conn.putheader("Content-Length", str(size))
                conn.endheaders()
                buffer = bytearray(SEND)
                view = memoryview(buffer)
                left = size
                while left:
                    count = src.readinto(view[:min(SEND, left)])
                    if not count:
                        raise HttpError(f"{body}: the file shrank while it was sent", retry=False)
                    conn.sock.sendall(view[:count])
                    left -= count
                    if sent is not None:
                        sent(count)
        elif body is not None:
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
        else:
            conn.endheaders()
        return conn.getresponse()

    def _exchange(self, method: str, url: str, headers: Mapping[str, str], body: bytes | Path | None,
                  sent: Callable[[int], None] | None) -> tuple[http.client.HTTPResponse, Origin,
                                                               http.client.HTTPConnection]:
        origin, target = split(url)
        proxy = proxy_for(origin, self.env)
        all_headers = {"User-Agent": "lwrecipe", "Accept-Encoding": "identity"}
        all_headers.update(self._credentials.get((origin.scheme, origin.host, origin.port), {}))
        all_headers.update(headers)
        if proxy is not None:
            origin = Origin(origin.scheme, origin.host, origin.port, proxy[0])
            if origin.scheme == "http":
                target = f"http://{origin.netloc}{target}"  # absolute form, for the proxy
                if proxy[1]:
                    all_headers["Proxy-Authorization"] = proxy[1]
        conn = self._take(origin)
        if conn is not None:
            try:
                return self._send(conn, method, target, all_headers, body, sent), origin, conn
            except (ConnectionError, http.client.BadStatusLine):
                conn.close()  # the server closed the idle connection: once more on a new one
            except BaseException:
                conn.close()
                raise
        conn = self._connect(origin, proxy[1] if proxy else None)
        try:
            return self._send(conn, method, target, all_headers, body, sent), origin, conn
        except BaseException:
            conn.close()
            raise

    @contextmanager
    def request(self, method: str, url: str, headers: Mapping[str, str] | None = None,
                body: bytes | Path | None = None, sent: Callable[[int], None] | None = None,
                ) -> Iterator[Response]:
        """One exchange; redirects are followed for GET and HEAD. The body is read
        inside the block; a connection whose body was read whole is kept for reuse."""
        headers = dict(headers or {})
        for _ in range(MAX_REDIRECTS + 1):
            try:
                raw, origin, conn = self._exchange(method, url, headers, body, sent)
            except _FAILURES as exc:
                raise _reason(exc) from None
            except ValueError as exc:  # a header value http.client refuses to send
                raise HttpError(str(exc), retry=False) from None
            location = raw.getheader("Location")
            if raw.status in REDIRECTS and method in ("GET", "HEAD") and location:
                raw.close()
                conn.close()
                url = urljoin(url, location)
                continue
            try:
                yield Response(raw, url, method)
            finally:
                if raw.isclosed() and conn.sock is not None:
                    self._give_back(origin, conn)
                else:
                    raw.close()
                    conn.close()
            return
        raise HttpError(f"more than {MAX_REDIRECTS} redirects", retry=False)

    def status(self, method: str, url: str, headers: Mapping[str, str] | None = None,
               body: bytes | Path | None = None, sent: Callable[[int], None] | None = None,
               ) -> tuple[int, http.client.HTTPMessage]:
        """The status and headers of a request whose response body does not matter
        (read and dropped, up to 64 KiB, so the connection can be reused)."""
        with self.request(method, url, headers, body, sent) as resp:
            resp.read(64 << 10)
            return resp.status, resp.headers
