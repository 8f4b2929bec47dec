"""`lwrecipe serve`: isolation headers, MIME types and ranges, over real HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from lwrecipe.inputs.web import Client
from lwrecipe.serve import byte_range, make_server


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one GET."""
    with Client() as client, client.request("GET", url, headers) as resp:
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read(1 << 20) or b""


@pytest.fixture
def site(tmp_path: Path):
    (tmp_path / "kernel.wasm").write_bytes(b"\0asm" + bytes(range(256)) * 4)
    (tmp_path / "index.html").write_text("<p>hi</p>")
    (tmp_path / "host.js").write_text("export {};")
    server = make_server(tmp_path, port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_isolation_headers_and_types(site) -> None:
    base, _ = site
    for path, mime in (
        ("/kernel.wasm", "application/wasm"),
        ("/index.html", "text/html"),
        ("/host.js", "text/javascript"),
    ):
        status, headers, _ = get(base + path)
        assert status == 200 and headers["content-type"].startswith(mime)
        assert headers["cross-origin-opener-policy"] == "same-origin"
        assert headers["cross-origin-embedder-policy"] == "require-corp"
        assert headers["accept-ranges"] == "bytes"
    assert get(base + "/missing")[0] == 404


@pytest.mark.slow
def test_ranges(site) -> None:
    base, root = site
    data = (root / "kernel.wasm").read_bytes()
    status, headers, body = get(base + "/kernel.wasm", {"Range": "bytes=4-9"})
    assert status == 206 and body == data[4:10]
    assert headers["content-range"] == f"bytes 4-9/{len(data)}"
    assert get(base + "/kernel.wasm", {"Range": "bytes=-4"})[2] == data[-4:]
    assert get(base + "/kernel.wasm", {"Range": "bytes=1000-"})[2] == data[1000:]
    status, headers, _ = get(base + "/kernel.wasm", {"Range": f"bytes={len(data)}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{len(data)}"


@pytest.mark.parametrize(
    "header, size, expected",
    [
        ("bytes=0-0", 10, (0, 0)),
        ("bytes=5-", 10, (5, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=8-20", 10, (8, 9)),
        ("bytes=10-", 10, None),
        ("bytes=5-4", 10, None),
        ("bytes=-0", 10, None),
    ],
)
def test_byte_range(header: str, size: int, expected) -> None:
    assert byte_range(header, size) == expected


@pytest.mark.parametrize("header", ["bytes=0-1,3-4", "items=0-1", "bytes=-"])
def test_unsupported_ranges(header: str) -> None:
    with pytest.raises(ValueError):
        byte_range(header, 10)


def test_serve_unbuilt_target_says_so(project, cli) -> None:
    from tests.conftest import simple_recipe

    project.recipe("runtime", simple_recipe("runtime"))
    result = cli("serve")
    assert result.code == 2 and "runtime: not built (run `lwrecipe build runtime` first)" in result.err


# Links in what is served: a link whose every step stays inside the served root is
# served; one that leaves it (absolute, `..` above the root, a chain through an
# outside directory) is refused, and no listing shows what lies outside.


def _raw(base: str, path: str) -> tuple[int, bytes]:
    """A GET of `path` exactly as written (no client normalises `..` or %2e%2e away)."""
    import http.client
    from urllib.parse import urlsplit

    conn = http.client.HTTPConnection(urlsplit(base).netloc, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def plant_links(root: Path, secret: Path) -> None:
    """Inside `root`: links out to `secret` every way there is, and one that stays inside."""
    outside = secret.parent
    (root / "site").mkdir()
    (root / "site" / "index.html").write_text("<p>inside</p>")
    (root / "index-link.html").symlink_to("site/index.html")  # relative, stays inside: served
    (root / "shadow").symlink_to(secret)  # absolute, to a file
    (root / "d").symlink_to("/")  # absolute, to the host's root
    (root / "up").symlink_to("..")  # relative, above the root
    (root / "rel").symlink_to(os.path.relpath(secret, root))
    (outside / "hop").symlink_to(secret.name)  # a chain: out through an outside link
    (root / "chain").symlink_to(outside / "hop")
    (root / "back").symlink_to(f"../{root.name}/site/index.html")  # leaves, then comes back in


def leak_paths(secret: Path) -> list[str]:
    host = secret.parent.name
    return [
        "/shadow",
        f"/d{secret}",
        f"/up/{host}/{secret.name}",
        "/rel",
        "/chain",
        f"/../{host}/{secret.name}",
        f"/%2e%2e/{host}/{secret.name}",
        f"/site/%2E%2E/%2e%2e/{host}/{secret.name}",
        f"/site/..%2f..%2f{host}%2f{secret.name}",
        f"/d{secret.parent}/",
        "/d/",
        "/up/",
        "/d/etc/passwd",
    ]


@pytest.fixture
def secret(tmp_path: Path) -> tuple[Path, bytes]:
    value = f"HOSTSECRET-{uuid.uuid4().hex}".encode()
    path = tmp_path / "host" / "shadow"
    path.parent.mkdir()
    path.write_bytes(value + b"\n")
    return path, value


@pytest.mark.slow
def test_links_leaving_a_served_directory_are_refused(tmp_path: Path, secret) -> None:
    path, value = secret
    root = tmp_path / "served"
    root.mkdir()
    plant_links(root, path)
    server = make_server(root, port=0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for url in leak_paths(path):
            status, body = _raw(base, url)
            assert value not in body and status in (403, 404), (url, status)
            assert b"passwd" not in body and b"shadow" not in body or url in ("/", "/site/"), url
        assert _raw(base, "/back")[0] == 403  # a path is checked at every step, not only where it ends
        assert _raw(base, "/index-link.html") == (200, b"<p>inside</p>")
        assert _raw(base, "/site/index.html") == (200, b"<p>inside</p>")
        (root / "docs").mkdir()
        (root / "docs" / "home.html").symlink_to("../index-link.html")  # a chain of two, both inside
        assert _raw(base, "/docs/home.html") == (200, b"<p>inside</p>")
        assert b"home.html" in _raw(base, "/docs/")[1]
        status, listing = _raw(base, "/")
        assert status == 200 and b"index-link.html" in listing and b"shadow" not in listing  # not listed
        assert b"passwd" not in listing and b"etc" not in listing
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_a_fifo_in_a_served_directory_does_not_hang_the_server(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    server = make_server(tmp_path, port=0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert _raw(f"http://127.0.0.1:{server.server_address[1]}", "/pipe")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_a_request_target_urllib_cannot_split_is_a_bad_request(tmp_path: Path, capfd) -> None:
    (tmp_path / "index.html").write_text("ok")
    server = make_server(tmp_path, port=0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10) as conn:
            conn.sendall(b"GET http://[::1/x HTTP/1.0\r\n\r\n")  # absolute form, as a proxy is asked
            answer = b""
            while chunk := conn.recv(65536):  # to the end: the server closes an HTTP/1.0 exchange
                answer += chunk
            assert answer.startswith(b"HTTP/1.0 400"), answer
        assert _raw(base, "/") == (200, b"ok")
    finally:
        server.shutdown()
        server.server_close()
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.sandbox
@pytest.mark.slow
def test_links_leaving_a_served_output_are_refused(project, secret) -> None:
    """`serve TARGET`: a build's output is a stranger's tree; the same links, made by the build."""
    from tests.conftest import run_subprocess, script_recipe

    path, value = secret
    out = '"$LW_OUT"'
    script = "\n".join(
        [
            f"mkdir -p {out}/site",
            f"echo '<p>inside</p>' > {out}/site/index.html",
            f"ln -s site/index.html {out}/index-link.html",
            f"ln -s {path} {out}/shadow",
            f"ln -s / {out}/d",
            f"ln -s .. {out}/up",
            f"ln -s {path.parent}/hop {out}/chain",
        ]
    )
    (path.parent / "hop").symlink_to(path.name)
    project.recipe("site", script_recipe("site", script, 'host_tools = ["mkdir", "ln"]'))
    cache = str(project.root / "cache")
    built = run_subprocess("--cache", cache, "build", "site", cwd=project.root)
    assert built.code == 0, built.err
    proc = subprocess.Popen(
        [sys.executable, "-m", "lwrecipe", "--cache", cache, "serve", "site", "--port", "0"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        base = line.split(" at ")[1].split()[0].rstrip("/")
        for url in ["/shadow", f"/d{path}", "/chain", "/d/", "/up/", f"/up/{path.parent.name}/{path.name}"]:
            status, body = _raw(base, url)
            assert value not in body and status in (403, 404), (url, status)
        assert _raw(base, "/index-link.html") == (200, b"<p>inside</p>\n")
    finally:
        proc.terminate()
        proc.wait(10)
