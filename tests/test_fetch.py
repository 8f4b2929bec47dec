"""Downloads against a real HTTP server on 127.0.0.1 with injected faults."""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys

import pytest

from lwrecipe.core.digests import Sha256
from lwrecipe.core.errors import FetchError, FetchIntegrityError, OfflineMissing
from lwrecipe.inputs.fetch import Downloader, Wanted, locations, make_client
from lwrecipe.inputs.mirrors import MIRRORS_ENV, from_env
from lwrecipe.inputs.retry import RetryPolicy
from lwrecipe.store.store import Store
from tests.servers import fault_server

pytestmark = pytest.mark.slow

DATA = os.urandom(3 * 1024 * 1024 + 17)
SHA = Sha256(hashlib.sha256(DATA).hexdigest())


@pytest.fixture
def server():
    with fault_server() as srv:
        yield srv


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "cache").ensure()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def downloader(store, sleeps):
    client = make_client(connect_timeout=2, read_timeout=1.0)
    yield Downloader(store, client, policy=RetryPolicy(attempts=3, backoff=0.01), sleep=sleeps.append)
    client.close()


def want(*urls: str, sha: str = SHA, name: str = "pkg-1.0.tar.gz") -> Wanted:
    return Wanted("pkg: sources[0]", Sha256(sha), tuple(urls), name)


def stored(store: Store) -> list[str]:
    return sorted(p.name for p in (store.root / "sources").iterdir())


def test_plain_download_is_verified_and_stored(server, downloader, store) -> None:
    got = downloader.fetch(want(server.add("/a", DATA)))
    assert got.path.read_bytes() == DATA and got.origin.endswith("/a") and stored(store) == [SHA]
    assert list((store.root / "tmp").iterdir()) == []


def test_second_fetch_comes_from_cache(server, downloader) -> None:
    url = server.add("/a", DATA)
    downloader.fetch(want(url))
    assert downloader.fetch(want(url)).origin == "cache" and server.hits["/a"] == 1


def test_first_location_404_then_mirror(server, downloader) -> None:
    got = downloader.fetch(want(server.add("/gone", DATA, "404"), server.add("/m", DATA)))
    assert got.origin.endswith("/m")


def test_reset_mid_body_resumes_with_range(server, downloader, sleeps) -> None:
    got = downloader.fetch(want(server.add("/a", DATA, "reset:1000000")))
    assert got.path.read_bytes() == DATA
    assert server.hits["/a"] == 2 and server.range_requests["/a"] == 1 and len(sleeps) == 1


def test_server_ignoring_range_restarts(server, downloader) -> None:
    server.ranges = False
    got = downloader.fetch(want(server.add("/a", DATA, "reset:500000")))
    assert got.path.read_bytes() == DATA and server.hits["/a"] == 2 and server.range_requests["/a"] == 0


def test_truncated_every_time_fails_cleanly(server, downloader, store) -> None:
    with pytest.raises(FetchError) as exc:
        downloader.fetch(want(server.add("/a", DATA, *["reset:100"] * 10)))
    assert "after 3 attempts" in exc.value.lines()[1]
    assert stored(store) == [] and list((store.root / "tmp").iterdir()) == []


def test_wrong_bytes_everywhere_is_an_integrity_error(server, downloader, store) -> None:
    urls = [server.add("/a", DATA, "wrong"), server.add("/b", DATA, "wrong")]
    with pytest.raises(FetchIntegrityError) as exc:
        downloader.fetch(want(*urls))
    lines = exc.value.lines()
    assert exc.value.exit_code == 3 and len(lines) == 3
    assert all(f"expected sha256 {SHA}, got " in line for line in lines[1:])
    assert stored(store) == []


def test_wrong_bytes_then_good_mirror(server, downloader) -> None:
    got = downloader.fetch(want(server.add("/a", DATA, "wrong"), server.add("/b", DATA)))
    assert got.origin.endswith("/b")


def test_503_with_retry_after_is_honoured(server, downloader, sleeps) -> None:
    got = downloader.fetch(want(server.add("/a", DATA, "503:2")))
    assert got.path.read_bytes() == DATA and sleeps == [2.0]


def test_429_storm_gives_up_then_next_location(server, downloader, sleeps) -> None:
    got = downloader.fetch(want(server.add("/a", DATA, "503", "503", "503"), server.add("/b", DATA)))
    assert got.origin.endswith("/b") and len(sleeps) == 2


def test_read_stall_times_out_then_next_location(server, downloader) -> None:
    got = downloader.fetch(want(server.add("/slow", DATA, "stall:3", "stall:3", "stall:3"), server.add("/b", DATA)))
    assert got.origin.endswith("/b")


def test_redirect_chain(server, downloader) -> None:
    server.add("/final", DATA)
    server.add("/r2", b"", "redirect:/final")
    got = downloader.fetch(want(server.add("/r1", b"", "redirect:/r2")))
    assert got.path.read_bytes() == DATA


def test_endless_redirects_fail(server, downloader) -> None:
    url = server.add("/loop", b"", *["redirect:/loop"] * 50)
    with pytest.raises(FetchError):
        downloader.fetch(want(url))


def test_content_encoding_does_not_change_stored_bytes(server, downloader) -> None:
    payload = gzip.compress(b"hello" * 1000, mtime=0)  # a .tar.gz-like file served with Content-Encoding: gzip
    server.encoding = "gzip"
    got = downloader.fetch(want(server.add("/x.gz", payload), sha=hashlib.sha256(payload).hexdigest()))
    assert got.path.read_bytes() == payload


def test_local_directory_mirror_by_sha_and_by_name(tmp_path, downloader, store) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "pkg-1.0.tar.gz").write_bytes(DATA)
    downloader.mirrors = from_env({MIRRORS_ENV: f"{mirror};http://127.0.0.1:9/unused"}).files
    got = downloader.fetch(want("http://127.0.0.1:9/nothing-listens-here"))
    assert got.origin == f"file://{mirror}/pkg-1.0.tar.gz"


def test_a_distributions_name_is_found_through_a_checksum_index(tmp_path, downloader) -> None:
    """A mirror directory found a file only by sha256 or by the URL's name: Debian's
    copy of the same bytes as `pkg_1.0.orig.tar.gz` was not found."""
    mirror = tmp_path / "debian-mirror"
    mirror.mkdir()
    (mirror / "pkg_1.0.orig.tar.gz").write_bytes(DATA)
    (mirror / "decoy.tar.gz").write_bytes(b"other bytes")
    (mirror / "SHA256SUMS").write_text(f"{'0' * 64}  decoy.tar.gz\n")
    (mirror / "debian.sha256sums").write_text(
        f"{hashlib.sha256(b'other bytes').hexdigest()}  decoy.tar.gz\n{SHA} *pkg_1.0.orig.tar.gz\n"
    )
    downloader.mirrors = from_env({MIRRORS_ENV: str(mirror)}).files
    got = downloader.fetch(want("http://127.0.0.1:9/nothing-listens-here"))
    assert got.origin == f"file://{mirror}/pkg_1.0.orig.tar.gz" and got.path.read_bytes() == DATA


def test_location_order() -> None:
    w = want("https://up/x.tgz", "https://mirror/x.tgz", name="x.tgz")
    assert locations(w, ["https://team/cache/", "/srv/mirror"]) == [
        f"https://team/cache/{SHA}",
        "https://team/cache/x.tgz",
        f"file:///srv/mirror/{SHA}",
        "file:///srv/mirror/x.tgz",
        "https://up/x.tgz",
        "https://mirror/x.tgz",
    ]


def test_offline_never_touches_the_network(server, downloader) -> None:
    url = server.add("/a", DATA)
    with pytest.raises(OfflineMissing):
        downloader.fetch(want(url), offline=True)
    assert server.hits["/a"] == 0


def test_no_network_is_one_clear_line(downloader) -> None:
    with pytest.raises(FetchError) as exc:
        downloader.fetch(want("http://127.0.0.1:9/x.tar.gz"))
    assert (
        exc.value.lines()[1] == "  http://127.0.0.1:9/x.tar.gz: cannot connect: connection refused (after 3 attempts)"
    )


def test_corrupt_cached_source_is_replaced(server, downloader, store) -> None:
    url = server.add("/a", DATA)
    path = downloader.fetch(want(url)).path
    path.write_bytes(b"rot")
    assert downloader.fetch(want(url)).path.read_bytes() == DATA and server.hits["/a"] == 2


FETCH_SCRIPT = """
import sys
from pathlib import Path
from lwrecipe.inputs.fetch import Downloader, Wanted, make_client
from lwrecipe.store.store import Store
store = Store(Path(sys.argv[1]))
with make_client() as client:
    got = Downloader(store, client).fetch(Wanted("pkg", sys.argv[3], (sys.argv[2],), "pkg.tar"))
print(got.origin)
"""


def test_two_processes_download_once(server, store) -> None:
    server.delay = 1.0
    url = server.add("/a", DATA)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FETCH_SCRIPT, str(store.root), url, SHA], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    origins = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert all(p.returncode == 0 for p in procs)
    assert server.hits["/a"] == 1 and origins == ["cache", url]


def test_cli_fetch_and_offline(project, cli, server) -> None:
    url = server.add("/pkg-1.0.tar.gz", DATA)
    project.recipe(
        "pkg",
        f'schema = 1\n[package]\nname = "pkg"\nversion = "1.0"\nlicense = "MIT"\n'
        f'[[sources]]\nurl = "{url}"\nsha256 = "{SHA}"\nunpack = false\nname = "blob"\n'
        '[build]\nscript = "true"\n',
    )
    offline = cli("fetch", "pkg", "--offline")
    assert offline.code == 1 and "--offline forbids downloading" in offline.err and server.hits[url[-15:]] == 0
    online = cli("fetch", "pkg")
    assert online.code == 0 and SHA[:12] in online.out
    assert cli("fetch", "pkg", "--offline").code == 0


def test_downloads_ask_for_identity_encoding(server, downloader) -> None:
    downloader.fetch(want(server.add("/a", DATA)))
    assert server.seen_headers[-1]["Accept-Encoding"] == "identity"
