"""`lwrecipe serve`: isolation headers, MIME types and ranges, over real HTTP."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from lwrecipe.serve import byte_range, make_server


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


def test_isolation_headers_and_types(site) -> None:  # noqa: ANN001
    base, _ = site
    for path, mime in (("/kernel.wasm", "application/wasm"), ("/index.html", "text/html"),
                       ("/host.js", "text/javascript")):
        resp = httpx.get(base + path)
        assert resp.status_code == 200 and resp.headers["content-type"].startswith(mime)
        assert resp.headers["cross-origin-opener-policy"] == "same-origin"
        assert resp.headers["cross-origin-embedder-policy"] == "require-corp"
        assert resp.headers["accept-ranges"] == "bytes"
    assert httpx.get(base + "/missing").status_code == 404


def test_ranges(site) -> None:  # noqa: ANN001
    base, root = site
    data = (root / "kernel.wasm").read_bytes()
    resp = httpx.get(base + "/kernel.wasm", headers={"Range": "bytes=4-9"})
    assert resp.status_code == 206 and resp.content == data[4:10]
    assert resp.headers["content-range"] == f"bytes 4-9/{len(data)}"
    assert httpx.get(base + "/kernel.wasm", headers={"Range": "bytes=-4"}).content == data[-4:]
    assert httpx.get(base + "/kernel.wasm", headers={"Range": "bytes=1000-"}).content == data[1000:]
    bad = httpx.get(base + "/kernel.wasm", headers={"Range": f"bytes={len(data)}-"})
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{len(data)}"


@pytest.mark.parametrize("header, size, expected", [
    ("bytes=0-0", 10, (0, 0)), ("bytes=5-", 10, (5, 9)), ("bytes=-3", 10, (7, 9)), ("bytes=8-20", 10, (8, 9)),
    ("bytes=10-", 10, None), ("bytes=5-4", 10, None), ("bytes=-0", 10, None),
])
def test_byte_range(header: str, size: int, expected) -> None:  # noqa: ANN001
    assert byte_range(header, size) == expected


@pytest.mark.parametrize("header", ["bytes=0-1,3-4", "items=0-1", "bytes=-"])
def test_unsupported_ranges(header: str) -> None:
    with pytest.raises(ValueError):
        byte_range(header, 10)


def test_serve_unbuilt_target_says_so(project, cli) -> None:  # noqa: ANN001
    from tests.conftest import simple_recipe

    project.recipe("runtime", simple_recipe("runtime"))
    result = cli("serve")
    assert result.code == 2 and "runtime: not built (run `lwrecipe build runtime` first)" in result.err
