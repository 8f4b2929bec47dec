"""The HTTP client against real servers: keep-alive, redirects and credentials,
proxies from the environment, TLS, truncated bodies and file uploads."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from lwrecipe.inputs.httpclient import Client, HttpError, Origin, bypasses_proxy, proxy_for, split
from tests.servers import fault_server, forward_proxy, nginx_server, self_signed


@pytest.fixture
def server():
    with fault_server() as srv:
        yield srv


def test_headers_sent_and_body_not_decoded(server) -> None:
    server.encoding = "gzip"
    url = server.add("/a", b"not really gzip")
    with Client(env={}) as client, client.request("GET", url) as resp:
        assert resp.status == 200 and resp.read(1 << 20) == b"not really gzip"
    seen = server.seen_headers[-1]
    assert seen["Accept-Encoding"] == "identity" and seen["User-Agent"] == "lwrecipe"


def test_connections_are_kept_alive_once_a_body_is_read(server) -> None:
    url = server.add("/a", b"x" * 100_000)
    with Client(env={}) as client:
        for _ in range(3):
            with client.request("GET", url) as resp:
                assert resp.read(1 << 20) == b"x" * 100_000
        assert client.status("HEAD", url)[0] == 200
        assert server.connections == 1
        with client.request("GET", url) as resp:
            next(resp.iter_raw(10))  # left unread: this connection is not reused
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
    with Client(env={}) as client:
        for _ in range(2):
            with client.request("GET", url) as resp:
                assert resp.read(10) == b"ok"
    thread.join(5)
    listener.close()
    assert len(accepted) == 2


def test_truncated_body_is_an_error(server) -> None:
    url = server.add("/a", b"y" * 5000, "reset:100")
    with Client(env={}) as client, client.request("GET", url) as resp:
        with pytest.raises(HttpError, match="before the whole body") as exc:
            resp.read(1 << 20)
        assert exc.value.retry


def test_read_timeout(server) -> None:
    url = server.add("/a", b"z" * 5000, "stall:3")
    with Client(read_timeout=0.3, env={}) as client, client.request("GET", url) as resp:
        with pytest.raises(HttpError) as exc:
            resp.read(1 << 20)
        assert exc.value.timeout and exc.value.retry


def test_redirects_keep_credentials_on_their_origin() -> None:
    with fault_server() as first, fault_server() as second:
        second.add("/final", b"data")
        first.add("/same", b"", "redirect:/here")
        first.add("/here", b"", f"redirect:{second.url('/final')}")
        with Client(env={}) as client:
            client.add_credential(first.url("/"), "Authorization", "Bearer secret")
            with client.request("GET", first.url("/same")) as resp:
                assert resp.status == 200 and resp.read(100) == b"data" and resp.url == second.url("/final")
        assert [h.get("Authorization") for h in first.seen_headers] == ["Bearer secret"] * 2
        assert [h.get("Authorization") for h in second.seen_headers] == [None]


def test_too_many_redirects_is_not_retried(server) -> None:
    url = server.add("/loop", b"", *["redirect:/loop"] * 20)
    with Client(env={}) as client, pytest.raises(HttpError, match="more than 10 redirects") as exc:
        client.status("GET", url)
    assert not exc.value.retry


def test_connection_refused_and_bad_urls() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Client(env={}) as client:
        with pytest.raises(HttpError, match="connection refused") as exc:
            client.status("GET", f"http://127.0.0.1:{port}/")
        assert exc.value.retry
        with pytest.raises(HttpError, match="not an http") as exc:
            client.status("GET", "ftp://example.org/x")
        assert not exc.value.retry
        with pytest.raises(HttpError) as exc:
            client.status("GET", f"http://127.0.0.1:{port}/", headers={"X-Bad": "a\r\nInjected: 1"})
        assert not exc.value.retry


def test_proxy_from_the_environment(server) -> None:
    url = server.add("/p", b"through the proxy")
    with forward_proxy() as proxy:
        env = {"http_proxy": proxy.url.replace("http://", "http://user:pa%40ss@")}
        with Client(env=env) as client:
            client.add_credential(url, "Authorization", "Bearer t")
            with client.request("GET", url) as resp:
                assert resp.read(100) == b"through the proxy"
        line, auth = proxy.seen[-1]
        assert line == f"GET {url} HTTP/1.1" and auth == "Basic dXNlcjpwYUBzcw=="  # user:pa@ss
        assert server.seen_headers[-1]["Authorization"] == "Bearer t"
        with Client(env={**env, "no_proxy": "localhost,127.0.0.1"}) as client:
            assert client.status("GET", url)[0] == 200
        assert len(proxy.seen) == 1


def test_tls_verified_and_tunnelled(tmp_path, monkeypatch) -> None:
    cert, key = self_signed(tmp_path)
    with fault_server(tls=(cert, key)) as server:
        url = server.add("/t", b"secret bytes")
        with Client(env={}) as client, pytest.raises(HttpError, match="not trusted") as exc:
            client.status("GET", url)
        assert not exc.value.retry
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        with Client(env={}) as client, client.request("GET", url) as resp:
            assert resp.read(100) == b"secret bytes"
        with forward_proxy() as proxy, Client(env={"https_proxy": proxy.url}) as client:
            with client.request("GET", url) as resp:
                assert resp.read(100) == b"secret bytes"
            assert [(line.rsplit(" ", 1)[0], auth) for line, auth in proxy.seen] == [
                (f"CONNECT 127.0.0.1:{server.port}", None)]


def test_file_upload_to_nginx(tmp_path) -> None:
    data = os.urandom(20 << 20 | 123)
    source = tmp_path / "blob"
    source.write_bytes(data)
    sent: list[int] = []
    with nginx_server(tmp_path / "nginx") as base, Client(env={}) as client:
        code, _ = client.status("PUT", f"{base}/cas/blob", body=source, sent=sent.append)
        assert code == 201 and sum(sent) == len(data) and len(sent) == 21
        assert (tmp_path / "nginx" / "www" / "cas" / "blob").read_bytes() == data
        code, _ = client.status("PUT", f"{base}/cas/small", body=b"small")
        assert code == 201 and (tmp_path / "nginx" / "www" / "cas" / "small").read_bytes() == b"small"


def test_no_proxy_matching() -> None:
    assert bypasses_proxy("example.com", 80, "example.com")
    assert bypasses_proxy("a.example.com", 80, ".example.com")
    assert bypasses_proxy("a.example.com", 80, "example.com")
    assert not bypasses_proxy("badexample.com", 80, "example.com")
    assert bypasses_proxy("anything", 443, "*")
    assert bypasses_proxy("host", 8080, "other, host:8080")
    assert not bypasses_proxy("host", 80, "host:8080")
    assert bypasses_proxy("::1", 80, "[::1]")
    assert not bypasses_proxy("host", 80, "")


def test_proxy_choice() -> None:
    origin, target = split("https://example.org:8443/a/b?c=d")
    assert origin == Origin("https", "example.org", 8443, None) and target == "/a/b?c=d"
    assert proxy_for(origin, {}) is None
    assert proxy_for(origin, {"http_proxy": "http://p:3128"}) is None
    assert proxy_for(origin, {"HTTPS_PROXY": "p:3128"}) == ("p:3128", None)
    assert proxy_for(origin, {"all_proxy": "http://p"}) == ("p:80", None)
    assert proxy_for(origin, {"https_proxy": "http://p:1", "no_proxy": "example.org"}) is None
    with pytest.raises(HttpError, match="only http:// proxies"):
        proxy_for(origin, {"https_proxy": "socks5://p:1080"})
    with pytest.raises(HttpError, match="bad port"):
        proxy_for(origin, {"https_proxy": "http://p:port"})



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
    url, thread = one_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                               b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n\r\n")
    with Client(env={}) as client, client.request("GET", url) as resp:
        assert resp.read(100) == b"hello world"
    thread.join(5)
    url, thread = one_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
    with Client(env={}) as client, client.request("GET", url) as resp, pytest.raises(HttpError) as exc:
        resp.read(100)
    assert exc.value.retry
    thread.join(5)


def test_a_body_without_a_length_ends_with_the_connection() -> None:
    url, thread = one_response(b"HTTP/1.0 200 OK\r\n\r\n" + b"q" * 300_000)
    with Client(env={}) as client, client.request("GET", url) as resp:
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
    with Client(env={}) as client, client.request("GET", url) as resp:
        pieces = resp.iter_raw()
        assert next(pieces) == b"first"
        first_seen.set()
        assert b"".join(pieces) == b"-rest"
    thread.join(5)
