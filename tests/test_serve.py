"""`lwrecipe serve`: isolation headers, MIME types and ranges, over real HTTP."""

from __future__ import annotations

import threading
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


def test_isolation_headers_and_types(site) -> None:  # noqa: ANN001
    base, _ = site
    for path, mime in (("/kernel.wasm", "application/wasm"), ("/index.html", "text/html"),
                       ("/host.js", "text/javascript")):
        status, headers, _ = get(base + path)
        assert status == 200 and headers["content-type"].startswith(mime)
        assert headers["cross-origin-opener-policy"] == "same-origin"
        assert headers["cross-origin-embedder-policy"] == "require-corp"
        assert headers["accept-ranges"] == "bytes"
    assert get(base + "/missing")[0] == 404


def test_ranges(site) -> None:  # noqa: ANN001
    base, root = site
    data = (root / "kernel.wasm").read_bytes()
    status, headers, body = get(base + "/kernel.wasm", {"Range": "bytes=4-9"})
    assert status == 206 and body == data[4:10]
    assert headers["content-range"] == f"bytes 4-9/{len(data)}"
    assert get(base + "/kernel.wasm", {"Range": "bytes=-4"})[2] == data[-4:]
    assert get(base + "/kernel.wasm", {"Range": "bytes=1000-"})[2] == data[1000:]
    status, headers, _ = get(base + "/kernel.wasm", {"Range": f"bytes={len(data)}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{len(data)}"


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
