"""HTTP for downloads and remote caches, through httpx.

One Client per command wraps one `httpx.Client`: HTTP/1.1 keep-alive (HTTP/2
where a TLS server offers it and `h2` is installed), redirects followed for GET
and HEAD, proxies and no_proxy from the environment as httpx reads them
(http://, https:// and, with `httpx[socks]`, socks5:// proxies), a connect and
a read timeout. TLS is verified against the system's certificates, as
`ssl.create_default_context()` does (SSL_CERT_FILE and SSL_CERT_DIR are
honoured), loaded once, on the first TLS handshake. Bodies are the raw bytes:
no Content-Encoding is decoded, so a hash sees what the server sent. A file
body is sent from one reused buffer, with progress reported per MiB.

Every exchange keeps a pace (deadlines.py: a minimum rate over a window, and a
deadline when the size is known) and, unless it is to a place the user chose (a
remote, a mirror: `trusted`), connects only to addresses the AddressPolicy
allows, after each redirect too (addresses.py, checked in sockets.py under
httpcore; through a proxy, the target's name is resolved and checked here).

Everything httpx raises leaves this module as an HttpError whose `retry` says
whether trying again can help; credentials go only to their own origin, and a
password in a proxy URL is never printed.
"""

from __future__ import annotations

import socket
import ssl
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..core.errors import redact
from .addresses import AddressPolicy, Refused
from .deadlines import Abandoned, Limits, Pace
from .tls import SystemTrust

if TYPE_CHECKING:
    import httpx
    from httpx import BaseTransport

# Bytes per read and send of a file body, one buffer reused. httpcore sends each
# piece with socket.send and copies what is left after a partial send: 256 KiB
# pieces pushed 1 GiB to nginx in 1.17 s against 1.31 s for 1 MiB pieces.
SEND = 256 << 10
# Bytes httpcore asks of each socket read (its default is 64 KiB). h11 copies
# each read three times under the GIL and does its bookkeeping per read; 1 MiB
# reads cost a 1 GiB pull 1.6 s of CPU against 1.85 s for 256 KiB reads, and
# their pieces reach the writer whole, without being joined (docs/performance.md).
READ = 1 << 20
MAX_REDIRECTS = 10


class HttpError(Exception):
    """The exchange failed before a whole response arrived. `retry` says whether
    trying again can help (a dropped connection, a timeout) or not (a bad URL,
    too many redirects, a certificate that does not verify)."""

    def __init__(self, reason: str, retry: bool = True, timeout: bool = False) -> None:
        super().__init__(redact(reason))
        self.retry = retry
        self.timeout = timeout


def _import_httpx() -> Any:
    """httpx, imported without what lwrecipe never runs: its command-line tool
    (rich, click, pygments: ~40 ms when installed) and httpcore's async backends
    (trio, anyio: ~10-50 ms), which a synchronous client never uses. They stay
    importable by anything else in the process."""
    if "httpx" in sys.modules:
        return sys.modules["httpx"]
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # None blocks the import (importlib docs); the stub wants modules
    blocked = [name for name in ("trio", "anyio") if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # as httpx._main above
    try:
        import httpcore
        import httpx
        from httpcore._sync import http11
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
    if hasattr(http11.HTTP11Connection, "READ_NUM_BYTES"):  # an httpcore without it reads 64 KiB
        http11.HTTP11Connection.READ_NUM_BYTES = READ
    del httpcore
    return httpx


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _reason(exc: Exception, while_reading: bool = False) -> HttpError:
    """What httpx raised, as a reason a person can read and whether to retry."""
    httpx = sys.modules["httpx"]
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return HttpError(f"TLS certificate not trusted: {cause.verify_message}", retry=False)
    if isinstance(exc, httpx.TimeoutException):
        return HttpError("timed out", timeout=True)
    if isinstance(exc, httpx.TooManyRedirects):
        return HttpError(f"more than {MAX_REDIRECTS} redirects", retry=False)
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return HttpError(f"not an http(s) URL: {exc}", retry=False)
    if isinstance(exc, httpx.LocalProtocolError):  # a header value that cannot be sent, say
        return HttpError(f"cannot send the request: {exc}", retry=False)
    if isinstance(exc, httpx.ProxyError):
        text = str(exc)
        return HttpError(f"proxy: {text}", retry=text[:1] != "4")  # 407: credentials, not luck
    if while_reading and isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        return HttpError(f"connection closed before the whole body arrived ({exc})")
    for cause in _causes(exc):
        if isinstance(cause, ConnectionRefusedError):
            return HttpError("cannot connect: connection refused")
        if isinstance(cause, socket.gaierror):
            return HttpError(f"cannot resolve the host name: {cause.strerror or cause}")
    text = str(exc)
    return HttpError(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def _file_body(path: Path, size: int, sent: Callable[[int], None] | None) -> Iterator[memoryview]:
    """The file's bytes from one reused buffer: each piece is handed on (h11 copies
    it into what it sends) before the buffer is filled again."""
    with path.open("rb", buffering=0) as src:
        buffer = bytearray(min(SEND, max(size, 1)))
        view = memoryview(buffer)
        left = size
        while left:
            count = src.readinto(view[: min(len(buffer), left)])
            if not count:
                raise HttpError(f"{path}: the file shrank while it was sent", retry=False)
            yield view[:count]
            left -= count
            if sent is not None:
                sent(count)


class Response:
    """A response whose head has arrived; the body is read from it."""

    def __init__(self, raw: httpx.Response, pace: Pace | None = None) -> None:
        self.raw = raw
        self.pace = pace
        self.status: int = raw.status_code
        self.headers: Mapping[str, str] = raw.headers  # case-insensitive get()
        self.url = str(raw.url)
        self.http_version: str = raw.http_version  # "HTTP/1.1", or "HTTP/2" where both sides speak it

    def iter_raw(self) -> Iterator[bytes]:
        """The body as it arrives, undecoded: each piece is what one socket read
        gave (at most READ bytes), so a slow server still shows progress. A body
        shorter than its Content-Length is an HttpError."""
        httpx = sys.modules["httpx"]
        if self.raw.is_stream_consumed:  # a response made in memory (httpx.MockTransport)
            yield self.raw.content
            return
        try:
            yield from self.raw.iter_raw()
        except Abandoned as exc:
            raise HttpError(str(exc), retry=False, timeout=True) from None
        except httpx.HTTPError as exc:
            late = self.pace.violation() if self.pace is not None else None
            if late is not None:
                raise HttpError(late, retry=False, timeout=True) from None
            raise _reason(exc, while_reading=True) from None

    def read(self, limit: int) -> bytes | None:
        """The whole body, or None when it is longer than limit bytes."""
        data = bytearray()
        for piece in self.iter_raw():
            data += piece
            if len(data) > limit:
                return None
        return bytes(data)


class Client:
    def __init__(
        self,
        connect_timeout: float = 15.0,
        read_timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        policy: AddressPolicy | None = None,
        limits: Limits | None = None,
    ) -> None:
        """transport replaces the network (an httpx.MockTransport in tests); the
        environment's proxies then do not apply. policy: what a request not marked
        trusted may connect to (default: public addresses and LWRECIPE_ALLOW_PRIVATE's);
        limits: the pace of every exchange (default: read_timeout's window, at the
        default minimum rate)."""
        httpx = _import_httpx()
        from . import sockets  # after _import_httpx: it imports httpcore

        self.policy = AddressPolicy.from_env() if policy is None else policy
        self.limits = Limits(timeout=read_timeout) if limits is None else limits
        self._credentials: dict[tuple[str, str, int], dict[str, str]] = {}
        self._managed: set[str] = set()  # lower-case names of every credential header
        trust = SystemTrust()
        http2 = find_spec("h2") is not None
        timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self.proxies: dict[str, str | None] = {}  # URL pattern -> proxy URL (None: no_proxy)
        mounts: dict[str, BaseTransport | None] = {}
        if transport is None:
            from httpx._utils import get_environment_proxies  # what httpx itself reads

            self.proxies = get_environment_proxies()
            for pattern, proxy in self.proxies.items():
                if proxy is None:
                    mounts[pattern] = None
                    continue
                # The proxy's own certificate is checked against the system's trust too
                # (httpcore would use certifi's bundle), as a private CA needs.
                tls_proxy = proxy.startswith("https://")
                mounts[pattern] = httpx.HTTPTransport(
                    verify=trust, http2=http2, proxy=httpx.Proxy(proxy, ssl_context=trust if tls_proxy else None)
                )
                sockets.install(mounts[pattern])
            transport = httpx.HTTPTransport(verify=trust, http2=http2)
            sockets.install(transport)
        self.http = httpx.Client(
            transport=transport,
            mounts=mounts,
            trust_env=False,
            timeout=timeout,
            max_redirects=MAX_REDIRECTS,
            event_hooks={"request": [self._credentials_for, self._check_proxied]},
            headers={"User-Agent": "lwrecipe", "Accept-Encoding": "identity"},
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def add_credential(self, url: str, name: str, value: str) -> None:
        """A header sent on every request to url's origin (scheme, host, port) and to
        no other, not after a redirect either. A proxy for plain http sees it, as
        it sees the whole request; through a proxy, https hides it (CONNECT)."""
        self._credentials.setdefault(_origin(url), {})[name] = value
        self._managed.add(name.lower())

    def _credentials_for(self, request: httpx.Request) -> None:
        """Called by httpx before each request it sends, redirected ones included."""
        for name in self._managed:
            request.headers.pop(name, None)
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        request.headers.update(self._credentials.get((request.url.scheme, request.url.host, port), {}))

    def _check_proxied(self, request: httpx.Request) -> None:
        """Through a proxy, the connection is the proxy's: the target's name is
        resolved here and refused when an address it has is (the proxy resolves it
        again, and may be answered otherwise; docs/security.md)."""
        from . import sockets

        now = sockets.current()
        if now is None or now.policy.anything or not self.proxies or self._proxy_of(str(request.url)) is None:
            return
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        sockets.check_name(now.policy, request.url.host, port)

    def _proxy_of(self, url: str) -> str | None:
        """The proxy httpx goes through for url: the first matching pattern in
        httpx's own order (most specific first)."""
        from httpx._utils import URLPattern

        httpx = sys.modules["httpx"]
        for pattern in sorted(URLPattern(p) for p in self.proxies):
            if pattern.matches(httpx.URL(url)):
                return self.proxies[pattern.pattern]
        return None

    @contextmanager
    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | Path | None = None,
        sent: Callable[[int], None] | None = None,
        trusted: bool = False,
        size: int | None = None,
    ) -> Iterator[Response]:
        """One exchange; redirects are followed for GET and HEAD. The body is read
        inside the block; a connection whose body was read whole is kept for reuse.
        trusted: a URL the user chose (a mirror), any address allowed; size: the bytes
        expected (the body sent or the one to come), for the exchange's deadline."""
        from . import sockets
        from .addresses import ANYTHING

        if size is None and isinstance(body, Path):
            size = body.stat().st_size
        pace = Pace(self.limits, size)
        with sockets.exchange(ANYTHING if trusted else self.policy, pace):
            yield from self._exchange(method, url, headers, body, sent, pace)

    def _exchange(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        body: bytes | Path | None,
        sent: Callable[[int], None] | None,
        pace: Pace,
    ) -> Iterator[Response]:
        httpx = sys.modules["httpx"]
        for attempt in (1, 2):
            all_headers = dict(headers or {})
            content: Any = body
            if isinstance(body, Path):
                size = body.stat().st_size
                all_headers["Content-Length"] = str(size)
                content = _file_body(body, size, sent)
            try:
                request = self.http.build_request(method, url, headers=all_headers, content=content)
                raw = self.http.send(request, stream=True, follow_redirects=method in ("GET", "HEAD"))
            except Refused as exc:
                raise HttpError(str(exc), retry=False) from None
            except Abandoned as exc:
                raise HttpError(str(exc), retry=False, timeout=True) from None
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                if pace.violation() is not None:
                    raise HttpError(str(pace.violation()), retry=False, timeout=True) from None
                if attempt == 1:
                    # Most likely a kept-alive connection the server closed as the request
                    # went out (nothing of a response arrived): once more, on a new one.
                    continue
                raise self._failed(exc, url) from None
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                late = pace.violation()
                if late is not None:
                    raise HttpError(late, retry=False, timeout=True) from None
                raise self._failed(exc, url) from None
            try:
                yield Response(raw, pace)
            finally:
                raw.close()  # a connection whose body was read whole goes back to the pool
            return

    def _failed(self, exc: Exception, url: str) -> HttpError:
        error = _reason(exc)
        try:
            proxy = self._proxy_of(url) if self.proxies else None
        except Exception:  # an unparsable URL has no proxy to name
            proxy = None
        if proxy is not None:
            return HttpError(f"{error} (through proxy {proxy})", retry=error.retry, timeout=error.timeout)
        return error

    def status(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | Path | None = None,
        sent: Callable[[int], None] | None = None,
        trusted: bool = False,
    ) -> tuple[int, Mapping[str, str]]:
        """The status and headers of a request whose response body does not matter
        (read and dropped, up to 64 KiB, so the connection can be reused)."""
        with self.request(method, url, headers, body, sent, trusted) as resp:
            resp.read(64 << 10)
            return resp.status, resp.headers


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError(f"not an http(s) URL: {url}", retry=False)
    return parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
