"""The network under every HTTP connection (an httpcore network backend): where a
connection may go, and the pace its bytes must keep.

web.Client opens an Exchange for each request (redirects included) in the
thread making it. Connecting directly, the host name is resolved here and only
addresses the exchange's AddressPolicy allows are connected to, so what is
checked is what is connected to (a second lookup could be answered otherwise);
a kept-alive connection is checked again, by its peer address, before a request
is written to it. Through a proxy the connection is the proxy's (the user's
choice); web.py checks the target's name instead. Reads and writes wait no longer
than the exchange's Pace allows, count what they move, and raise
deadlines.Abandoned once the pace is broken.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpcore

from .addresses import AddressPolicy, Refused
from .deadlines import Pace

WRITE_SLICE = 64 << 10  # bytes written between two checks of the pace


@dataclass(frozen=True)
class Exchange:
    policy: AddressPolicy
    pace: Pace


_current = threading.local()


@contextmanager
def exchange(policy: AddressPolicy, pace: Pace) -> Iterator[Exchange]:
    """Connections made and used by this thread inside the block follow policy and pace."""
    previous = getattr(_current, "exchange", None)
    _current.exchange = Exchange(policy, pace)
    try:
        yield _current.exchange
    finally:
        _current.exchange = previous


def current() -> Exchange | None:
    return getattr(_current, "exchange", None)


def resolve(host: str, port: int) -> list[str]:
    """Every address host resolves to, in the resolver's order, each once."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise httpcore.ConnectError(str(exc)) from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_name(policy: AddressPolicy, host: str, port: int) -> None:
    """Refused when host resolves to an address policy refuses (a name the resolver
    does not know here passes: a proxy may know it)."""
    if policy.anything:
        return
    try:
        addresses = resolve(host, port)
    except httpcore.ConnectError:
        return
    for address in addresses:
        reason = policy.refusal(host, address)
        if reason is not None:
            raise Refused(reason)


class Backend(httpcore.NetworkBackend):
    """httpcore's own backend, checked. `direct`: its connections go to the
    request's host (not to a proxy), so their addresses are checked."""

    def __init__(self, inner: httpcore.NetworkBackend, direct: bool) -> None:
        self.inner, self.direct = inner, direct

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        now = current()
        if not self.direct or now is None or now.policy.anything:
            return Stream(self.inner.connect_tcp(host, port, timeout, local_address, socket_options), self)
        refused: list[str] = []
        failed: httpcore.ConnectError | None = None
        for address in resolve(host, port):
            reason = now.policy.refusal(host, address)
            if reason is not None:
                refused.append(reason)
                continue
            try:  # the address itself: what was checked is what is connected to
                return Stream(self.inner.connect_tcp(address, port, timeout, local_address, socket_options), self)
            except httpcore.ConnectError as exc:
                failed = exc
        if failed is not None:
            raise failed
        raise Refused(refused[0] if refused else f"{host}: no address")

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return Stream(self.inner.connect_unix_socket(path, timeout, socket_options), self)

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, backend: Backend) -> None:
        self.inner, self.backend = inner, backend
        self._checked: Exchange | None = None

    def _pace(self) -> Pace | None:
        now = current()
        if now is None:
            return None
        if self.backend.direct and not now.policy.anything and self._checked is not now:
            peer = self.inner.get_extra_info("server_addr")
            if isinstance(peer, tuple):  # a kept-alive connection, made for another exchange
                reason = now.policy.refusal(str(peer[0]), str(peer[0]))
                if reason is not None:
                    raise Refused(reason)
            self._checked = now
        now.pace.check()
        return now.pace

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        pace = self._pace()
        if pace is None:
            return self.inner.read(max_bytes, timeout)
        try:
            data = self.inner.read(max_bytes, pace.wait_limit(timeout))
        except httpcore.TimeoutException:
            pace.check()
            raise
        pace.moved(len(data), "in")
        pace.check()
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        pace = self._pace()
        if pace is None:
            self.inner.write(buffer, timeout)
            return
        view = memoryview(buffer)
        for start in range(0, len(view), WRITE_SLICE):
            piece = view[start : start + WRITE_SLICE]
            try:
                self.inner.write(piece, pace.wait_limit(timeout))  # type: ignore[arg-type]  # a memoryview slice: sockets take any buffer, the stub says bytes
            except httpcore.TimeoutException:
                pace.check()
                raise
            pace.moved(len(piece), "out")
            pace.check()

    def close(self) -> None:
        self.inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return Stream(self.inner.start_tls(ssl_context, server_hostname, timeout), self.backend)

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


def install(transport: Any) -> None:
    """Put a checked Backend under an httpx.HTTPTransport (its pool, direct or proxy)."""
    pool = transport._pool
    assert hasattr(pool, "_network_backend"), "httpcore's pool no longer takes a network backend"
    pool._network_backend = Backend(pool._network_backend, direct=type(pool) is httpcore.ConnectionPool)
