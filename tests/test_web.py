"""The HTTP client (httpx) against real servers: keep-alive, redirects and
credentials, proxies from the environment (http, CONNECT, SOCKS5), TLS, truncated
bodies and file uploads; httpx's MockTransport for the mapping of its errors."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading

import httpx
import pytest

from lwrecipe.inputs.web import SEND, Client, HttpError
from tests.servers import fault_server, forward_proxy, nginx_server, self_signed, socks_proxy

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch):
    """Each test says which proxies it wants; none come from the machine."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def server():
    with fault_server() as srv:
        yield srv


@pytest.mark.slow
def test_headers_sent_and_body_not_decoded(server) -> None:
    server.encoding = "gzip"
    url = server.add("/a", b"not really gzip")
    with Client() as client, client.request("GET", url) as resp:
        assert resp.status == 200 and resp.read(1 << 20) == b"not really gzip"
    seen = server.seen_headers[-1]
    assert seen["Accept-Encoding"] == "identity" and seen["User-Agent"] == "lwrecipe"


@pytest.mark.slow
def test_connections_are_kept_alive_once_a_body_is_read(server) -> None:
    url = server.add("/a", b"x" * 100_000)
    with Client() as client:
        for _ in range(3):
            with client.request("GET", url) as resp:
                assert resp.read(1 << 20) == b"x" * 100_000
        assert client.status("HEAD", url)[0] == 200
        assert server.connections == 1
        with client.request("GET", url) as resp:
            next(resp.iter_raw())  # left unread: this connection is not reused
        assert client.status("GET", url)[0] == 200
        assert server.connections == 2


@pytest.mark.parametrize("when", ["after its response", "on the next request"])
def test_a_connection_the_server_closed_is_replaced(when: str) -> None:
    """A server that closes a kept-alive connection without saying so: while it is
    idle (seen before it is used), or on receiving the next request (retried
    once on a new connection)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def serve() -> None:
        while len(accepted) < 2:
            conn, _ = listener.accept()
            accepted.append(conn)
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            if when == "on the next request" and len(accepted) == 1:
                conn.recv(65536)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/x"
    with Client() as client:
        for _ in range(2):
            with client.request("GET", url) as resp:
                assert resp.read(10) == b"ok"
    thread.join(5)
    listener.close()
    assert len(accepted) == 2


@pytest.mark.slow
def test_truncated_body_is_an_error(server) -> None:
    url = server.add("/a", b"y" * 5000, "reset:100")
    with Client() as client, client.request("GET", url) as resp:
        with pytest.raises(HttpError, match="before the whole body") as exc:
            resp.read(1 << 20)
        assert exc.value.retry


@pytest.mark.slow
def test_read_timeout(server) -> None:
    url = server.add("/a", b"z" * 5000, "stall:3")
    with Client(read_timeout=0.3) as client, client.request("GET", url) as resp:
        with pytest.raises(HttpError) as exc:
            resp.read(1 << 20)
        assert exc.value.timeout and exc.value.retry


@pytest.mark.slow
def test_redirects_keep_credentials_on_their_origin() -> None:
    with fault_server() as first, fault_server() as second:
        second.add("/final", b"data")
        first.add("/same", b"", "redirect:/here")
        first.add("/here", b"", f"redirect:{second.url('/final')}")
        with Client() as client:
            client.add_credential(first.url("/"), "Authorization", "Bearer secret")
            with client.request("GET", first.url("/same")) as resp:
                assert resp.status == 200 and resp.read(100) == b"data" and resp.url == second.url("/final")
        assert [h.get("Authorization") for h in first.seen_headers] == ["Bearer secret"] * 2
        assert [h.get("Authorization") for h in second.seen_headers] == [None]


@pytest.mark.slow
def test_too_many_redirects_is_not_retried(server) -> None:
    url = server.add("/loop", b"", *["redirect:/loop"] * 20)
    with Client() as client, pytest.raises(HttpError, match="more than 10 redirects") as exc:
        client.status("GET", url)
    assert not exc.value.retry


def test_connection_refused_and_bad_urls() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Client() as client:
        with pytest.raises(HttpError, match="connection refused") as exc:
            client.status("GET", f"http://127.0.0.1:{port}/")
        assert exc.value.retry
        with pytest.raises(HttpError, match="not an http") as exc:
            client.status("GET", "ftp://example.org/x")
        assert not exc.value.retry


def test_a_header_that_would_inject_another_is_refused(server) -> None:
    url = server.add("/h", b"")
    with Client() as client, pytest.raises(HttpError, match="cannot send") as exc:
        client.status("GET", url, headers={"X-Bad": "a\r\nInjected: 1"})
    assert not exc.value.retry and not any("Injected" in h for h in server.seen_headers)


@pytest.mark.slow
def test_proxy_from_the_environment(server, monkeypatch) -> None:
    url = server.add("/p", b"through the proxy")
    with forward_proxy() as proxy:
        monkeypatch.setenv("http_proxy", proxy.url.replace("http://", "http://user:pa%40ss@"))
        with Client() as client:
            client.add_credential(url, "Authorization", "Bearer t")
            with client.request("GET", url) as resp:
                assert resp.read(100) == b"through the proxy"
        line, auth = proxy.seen[-1]
        assert line == f"GET {url} HTTP/1.1" and auth == "Basic dXNlcjpwYUBzcw=="  # user:pa@ss
        assert server.seen_headers[-1]["Authorization"] == "Bearer t"
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        with Client() as client:
            assert client.status("GET", url)[0] == 200
        assert len(proxy.seen) == 1


def test_a_proxy_password_is_never_printed(monkeypatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://alice:hunter2@127.0.0.1:{port}")
    with Client() as client, pytest.raises(HttpError) as exc:
        client.status("GET", "http://example.invalid/x")
    assert "hunter2" not in str(exc.value) and f"alice:***@127.0.0.1:{port}" in str(exc.value)
    assert "connection refused" in str(exc.value) and exc.value.retry


@pytest.mark.slow
def test_socks5_proxy_from_the_environment(server, monkeypatch) -> None:
    url = server.add("/s", b"through socks")
    with socks_proxy("bob", "s3cret") as proxy:
        monkeypatch.setenv("ALL_PROXY", f"socks5://bob:s3cret@127.0.0.1:{proxy.port}")
        with Client() as client:
            client.add_credential(url, "X-Token", "t")
            for _ in range(2):
                with client.request("GET", url) as resp:
                    assert resp.read(100) == b"through socks"
        assert proxy.seen == [("bob", "127.0.0.1", server.port)]  # one tunnel, kept alive
        assert server.seen_headers[-1]["X-Token"] == "t"
        monkeypatch.setenv("ALL_PROXY", f"socks5://bob:wrong@127.0.0.1:{proxy.port}")
        with Client() as client, pytest.raises(HttpError) as exc:
            client.status("GET", url)
        assert "wrong" not in str(exc.value) and "through proxy socks5://bob:***@" in str(exc.value)


@pytest.mark.slow
def test_tls_verified_and_tunnelled(tmp_path, monkeypatch) -> None:
    cert, key = self_signed(tmp_path)
    with fault_server(tls=(cert, key)) as server:
        url = server.add("/t", b"secret bytes")
        with Client() as client, pytest.raises(HttpError, match="not trusted") as exc:
            client.status("GET", url)
        assert not exc.value.retry
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        with Client() as client, client.request("GET", url) as resp:
            assert resp.read(100) == b"secret bytes"
        certs = tmp_path / "certs"  # a private CA's directory, hashed as update-ca-certificates leaves it
        certs.mkdir()
        shutil.copy(cert, certs / "private-ca.pem")
        subprocess.run(["openssl", "rehash", str(certs)], check=True)
        monkeypatch.delenv("SSL_CERT_FILE")
        monkeypatch.setenv("SSL_CERT_DIR", str(certs))
        with Client() as client, client.request("GET", url) as resp:
            assert resp.read(100) == b"secret bytes"
        with forward_proxy() as proxy:
            monkeypatch.setenv("https_proxy", proxy.url)
            with Client() as client, client.request("GET", url) as resp:
                assert resp.read(100) == b"secret bytes"
            assert [(line.rsplit(" ", 1)[0], auth) for line, auth in proxy.seen] == [
                (f"CONNECT 127.0.0.1:{server.port}", None)
            ]


def test_file_upload_to_nginx(tmp_path) -> None:
    data = os.urandom(20 << 20 | 123)
    source = tmp_path / "blob"
    source.write_bytes(data)
    sent: list[int] = []
    with nginx_server(tmp_path / "nginx") as base, Client() as client:
        code, _ = client.status("PUT", f"{base}/cas/blob", body=source, sent=sent.append)
        assert code == 201 and sum(sent) == len(data) and len(sent) == -(-len(data) // SEND)
        assert (tmp_path / "nginx" / "www" / "cas" / "blob").read_bytes() == data
        code, _ = client.status("PUT", f"{base}/cas/small", body=b"small")
        assert code == 201 and (tmp_path / "nginx" / "www" / "cas" / "small").read_bytes() == b"small"


def one_response(raw: bytes) -> tuple[str, threading.Thread]:
    """A server that answers one request with these bytes, then closes."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(raw)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/x", thread


def test_chunked_bodies() -> None:
    url, thread = one_response(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n\r\n"
    )
    with Client() as client, client.request("GET", url) as resp:
        assert resp.read(100) == b"hello world"
    thread.join(5)
    url, thread = one_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
    with Client() as client, client.request("GET", url) as resp, pytest.raises(HttpError) as exc:
        resp.read(100)
    assert exc.value.retry
    thread.join(5)


def test_a_body_without_a_length_ends_with_the_connection() -> None:
    url, thread = one_response(b"HTTP/1.0 200 OK\r\n\r\n" + b"q" * 300_000)
    with Client() as client, client.request("GET", url) as resp:
        assert resp.read(1 << 20) == b"q" * 300_000
    thread.join(5)


def test_pieces_come_as_they_arrive() -> None:
    """A slow server's bytes are handed on when they arrive, not once a large
    buffer is full: the server sends the rest only after the client has the first part."""
    listener = socket.create_server(("127.0.0.1", 0))
    first_seen = threading.Event()

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfirst")
                first_seen.wait(5)
                conn.sendall(b"-rest")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/x"
    with Client() as client, client.request("GET", url) as resp:
        pieces = resp.iter_raw()
        assert next(pieces) == b"first"
        first_seen.set()
        assert b"".join(pieces) == b"-rest"
    thread.join(5)


def mock_client(handler) -> Client:
    return Client(transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    "raised, reason, retry, timeout",
    [
        (httpx.ConnectTimeout("connect"), "timed out", True, True),
        (httpx.ReadTimeout("read"), "timed out", True, True),
        (httpx.PoolTimeout("pool"), "timed out", True, True),
        (httpx.ConnectError("[Errno 113] No route to host"), "ConnectError: [Errno 113] No route to host", True, False),
        (httpx.ReadError("reset"), "ReadError: reset", True, False),
        (httpx.RemoteProtocolError("illegal status line"), "RemoteProtocolError: illegal status line", True, False),
        (httpx.ProxyError("407 Proxy Authentication Required"), "proxy: 407", False, False),
        (httpx.ProxyError("502 Bad Gateway"), "proxy: 502", True, False),
        (httpx.UnsupportedProtocol("Request URL has an unsupported protocol"), "not an http(s) URL", False, False),
        (httpx.LocalProtocolError("Illegal header value"), "cannot send the request", False, False),
    ],
)
def test_httpx_errors_become_reasons(raised, reason, retry, timeout) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise raised

    with mock_client(handler) as client, pytest.raises(HttpError) as exc:
        client.status("GET", "http://cache.example/x")
    assert str(exc.value).startswith(reason) and (exc.value.retry, exc.value.timeout) == (retry, timeout)


def test_causes_are_named() -> None:
    import ssl

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("x") from ConnectionRefusedError(111, "Connection refused")

    def untrusted(request: httpx.Request) -> httpx.Response:
        cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
        cause.verify_message = "self-signed certificate"
        raise httpx.ConnectError("x") from cause

    def unknown_host(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("x") from socket.gaierror(-2, "Name or service not known")

    for handler, reason, retry in [
        (refused, "cannot connect: connection refused", True),
        (untrusted, "TLS certificate not trusted: self-signed certificate", False),
        (unknown_host, "cannot resolve the host name: Name or service not known", True),
    ]:
        with mock_client(handler) as client, pytest.raises(HttpError) as exc:
            client.status("HEAD", "https://cache.example/x")
        assert (str(exc.value), exc.value.retry) == (reason, retry)


def test_a_body_cut_short_is_retried() -> None:
    class Cut(httpx.SyncByteStream):
        def __iter__(self):
            yield b"part"
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    with (
        mock_client(lambda request: httpx.Response(200, stream=Cut())) as client,
        client.request("GET", "http://cache.example/x") as resp,
        pytest.raises(HttpError) as exc,
    ):
        resp.read(100)
    assert "before the whole body" in str(exc.value) and exc.value.retry


def test_credentials_never_follow_a_redirect_elsewhere() -> None:
    """Any header named as a credential (not only Authorization, which httpx drops by
    itself) goes to its own origin only, and comes back after a redirect home."""
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers.get("X-Cache-Token")))
        if request.url.host == "cache.example" and request.url.path == "/a":
            return httpx.Response(302, headers={"Location": "http://elsewhere.example/b"})
        if request.url.host == "elsewhere.example":
            return httpx.Response(302, headers={"Location": "http://cache.example/c"})
        return httpx.Response(200, content=b"done")

    with mock_client(handler) as client:
        client.add_credential("http://cache.example/", "X-Cache-Token", "secret")
        with client.request("GET", "http://cache.example/a") as resp:
            assert resp.read(10) == b"done"
        assert client.status("PUT", "http://cache.example/a", body=b"x")[0] == 302  # PUT is not redirected
    assert seen == [
        ("http://cache.example/a", "secret"),
        ("http://elsewhere.example/b", None),
        ("http://cache.example/c", "secret"),
        ("http://cache.example/a", "secret"),
    ]


def test_what_making_a_client_imports() -> None:
    """httpx without its command-line tool, and httpcore without the async backends a
    synchronous client never uses; both stay importable afterwards."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom lwrecipe.inputs.web import Client\nClient().close()\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'httpx', 'httpcore', 'anyio', 'trio', 'click', "
        "'pygments'}))\nimport anyio\nprint('anyio importable')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["['httpcore', 'httpx']", "anyio importable"]


@pytest.mark.slow
def test_http2_to_a_cache_that_offers_it(tmp_path, monkeypatch) -> None:
    """nginx over TLS offering h2: uploads and downloads go over HTTP/2, bytes intact."""
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    data = os.urandom(3 << 20 | 5)
    (tmp_path / "blob").write_bytes(data)
    sent: list[int] = []
    with nginx_server(tmp_path / "nginx", tls=(cert, key)) as base, Client() as client:
        with client.request("PUT", f"{base}/cas/blob", body=tmp_path / "blob", sent=sent.append) as resp:
            assert resp.status == 201 and resp.http_version == "HTTP/2"
        assert sum(sent) == len(data)
        with client.request("GET", f"{base}/cas/blob") as resp:
            assert resp.http_version == "HTTP/2" and resp.read(len(data)) == data
        assert client.status("HEAD", f"{base}/cas/missing")[0] == 404
