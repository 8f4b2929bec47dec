"""Servers that fight back, as the host meets them: one that drips a body a byte at
a time (a download or a pull must give up, not hang), and recipe URLs that point
the host at its own loopback or at a private network, directly or by a redirect
(refused before any request arrives, unless the user's own config allows them)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from lwrecipe.core.digests import Sha256
from lwrecipe.core.errors import FetchError, RemoteError
from lwrecipe.core.record import Blob, BuildRecord
from lwrecipe.inputs.fetch import Downloader, NullReporter, Wanted, make_client
from lwrecipe.inputs.retry import RetryPolicy
from lwrecipe.remote.backends.opening import open_backend
from lwrecipe.remote.config import RemoteSpec, Settings
from lwrecipe.remote.remote import Remotes
from lwrecipe.store.store import Store
from tests.conftest import Project, run_subprocess
from tests.servers import fault_server

pytestmark = pytest.mark.slow

DATA = os.urandom(40)  # dripped at 4 bytes a second, it would take 10 s
SHA = Sha256(hashlib.sha256(DATA).hexdigest())
# a record whose output is DATA, for pulling its blob from a remote
RECORD = BuildRecord(
    key=Sha256("a" * 64), name="pkg", output_id=Sha256("b" * 64), blob=Blob(sha256=SHA, size=len(DATA)), log=SHA
)
ALLOW = "LWRECIPE_ALLOW_PRIVATE"


def pkg_recipe(project: Project, url: str, sha: str = SHA) -> None:
    project.recipe(
        "pkg",
        f'schema = 1\n[package]\nname = "pkg"\nversion = "1.0"\nlicense = "MIT"\n'
        f'[[sources]]\nurl = "{url}"\nsha256 = "{sha}"\nunpack = false\nname = "blob"\n'
        '[build]\nscript = "true"\n',
    )


def fetch(project: Project, env: dict[str, str]) -> tuple[int, str]:
    result = run_subprocess("--cache", str(project.root / "cache"), "fetch", "pkg", cwd=project.root, env=env)
    return result.code, result.err


def user_config(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "user-config.toml"
    path.write_text(text)
    return {"LWRECIPE_CONFIG": str(path)}


# -- deadlines ---------------------------------------------------------------------------------------------------


def test_a_dripping_source_is_abandoned_then_the_next_location(tmp_path: Path) -> None:
    with fault_server() as server:
        store = Store(tmp_path / "cache").ensure()
        with make_client(read_timeout=1.0) as client:
            downloader = Downloader(store, client, policy=RetryPolicy(attempts=3, backoff=0.01), sleep=lambda s: None)
            got = downloader.fetch(
                Wanted("pkg: sources[0]", SHA, (server.add("/drip", DATA, "drip:0.25"), server.add("/b", DATA)), "blob")
            )
        assert got.origin.endswith("/b") and got.path.read_bytes() == DATA
        assert server.hits["/drip"] == 1  # not tried again: a drip is not luck


def test_a_dripping_source_fails_the_fetch_with_one_line(project: Project, tmp_path: Path) -> None:
    with fault_server() as server:
        pkg_recipe(project, server.add("/pkg.tar.gz", DATA, "drip:0.25"))
        code, err = fetch(project, user_config(tmp_path, "[network]\ntimeout = 1\nmin_rate = 1000\n"))
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert lines[0] == "error: pkg: sources[0]: pkg.tar.gz: could not be fetched from any location", err
    assert lines[1].endswith("/pkg.tar.gz: slower than 1000 B/s for 1 s; abandoned") and len(lines) == 2, err
    assert not (project.root / "cache" / "sources" / SHA).exists()


def test_a_dripping_remote_is_abandoned(tmp_path: Path) -> None:
    with fault_server() as server:
        server.add(f"/cas/{SHA}", DATA, "drip:0.25")
        spec = RemoteSpec(url=server.url(""), name="cache", timeout=1.0)
        store = Store(tmp_path / "cache").ensure()
        with (
            Remotes(store, Settings((spec,), None, {}), [open_backend(spec)], verify_signatures=False) as remotes,
            pytest.raises(RemoteError, match=r"cache: cas/\w{12}: .*slower than .* for 1 s; abandoned"),
        ):
            remotes.fetch_blob(RECORD, remotes.backends[0])
        assert not store.has("cas", SHA)


def test_a_remote_that_reads_a_push_a_byte_at_a_time_is_abandoned(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(bytes(32 << 20))  # more than the sockets' buffers hold
    with fault_server() as server:
        # 256 KiB/s, below what is asked; each 64 KiB slice still moves within a fraction
        # of the window, so the pace (not a stalled write) is what abandons it, even on a
        # loaded machine
        server.behaviour[f"PUT /cas/{SHA}"] = ["drip:0.25:65536"] * 4
        spec = RemoteSpec(url=server.url(""), name="cache", timeout=3.0, min_rate=1 << 20)
        backend = open_backend(spec, policy=RetryPolicy(attempts=1))
        with pytest.raises(RemoteError, match="slower than .* for 3 s; abandoned"):
            backend.upload("cas", SHA, blob, NullReporter())
        backend.close()


# -- private addresses -------------------------------------------------------------------------------------------


def test_a_recipe_url_on_loopback_is_refused_before_any_request(project: Project, monkeypatch) -> None:
    monkeypatch.delenv(ALLOW, raising=False)
    with fault_server() as server:
        pkg_recipe(project, server.add("/pkg.tar.gz", DATA))
        code, err = fetch(project, {})
        assert server.connections == 0 and not server.hits
    assert code == 1, err
    assert "127.0.0.1 is a loopback address" in err and "allow_private" in err, err


def test_localhost_by_name_is_refused_too(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(ALLOW, raising=False)
    with fault_server() as server:
        server.add("/a", DATA)
        store = Store(tmp_path / "cache").ensure()
        with make_client() as client, pytest.raises(FetchError) as caught:
            Downloader(store, client).fetch(
                Wanted("pkg: sources[0]", SHA, (f"http://localhost:{server.port}/a",), "blob")
            )
        assert server.connections == 0
    assert "is a loopback address" in caught.value.attempts[0]


def test_a_redirect_to_another_private_address_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(ALLOW, "127.0.0.1")  # the first hop is allowed, 127.0.0.2 is not
    with fault_server() as first, fault_server(host="127.0.0.2") as target:
        target.add("/secret", DATA)
        url = first.add("/pkg.tar.gz", b"", f"redirect:{target.url('/secret')}")
        store = Store(tmp_path / "cache").ensure()
        with make_client() as client, pytest.raises(FetchError) as caught:
            Downloader(store, client).fetch(Wanted("pkg: sources[0]", SHA, (url,), "blob"))
        assert first.hits["/pkg.tar.gz"] == 1 and target.connections == 0
    assert "127.0.0.2 is a loopback address" in caught.value.attempts[0]


def test_the_users_config_allows_a_private_network(project: Project, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(ALLOW, raising=False)
    with fault_server() as server:
        pkg_recipe(project, server.add("/pkg.tar.gz", DATA))
        code, err = fetch(project, user_config(tmp_path, '[network]\nallow_private = ["127.0.0.0/8"]\n'))
    assert code == 0, err


def test_a_projects_config_cannot_allow_private_addresses(project: Project, monkeypatch) -> None:
    """A project's `[network]` is ignored with the warning unless the user accepted the project."""
    monkeypatch.delenv(ALLOW, raising=False)
    (project.root / "lwrecipe.toml").write_text('[network]\nallow_private = ["127.0.0.0/8"]\n')
    with fault_server() as server:
        pkg_recipe(project, server.add("/pkg.tar.gz", DATA))
        code, err = fetch(project, {})
        assert server.connections == 0
        assert code == 1 and "lwrecipe.toml: network: ignored (a project's config cannot set these" in err, err
        accepted = run_subprocess(
            "--cache", str(project.root / "cache"), "--accept-project-config", "fetch", "pkg", cwd=project.root
        )
    assert accepted.code == 0, accepted.err


def test_the_users_mirror_on_a_private_address_is_used(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(ALLOW, raising=False)
    with fault_server() as server:
        server.add(f"/mirror/{SHA}", DATA)
        store = Store(tmp_path / "cache").ensure()
        with make_client() as client:
            got = Downloader(store, client, mirrors=[server.url("/mirror")]).fetch(
                Wanted("pkg: sources[0]", SHA, ("http://127.0.0.1:9/pkg.tar.gz",), "blob")
            )
    assert got.path.read_bytes() == DATA


def test_a_remote_the_user_configured_on_loopback_is_used(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(ALLOW, raising=False)
    with fault_server() as server:
        server.add(f"/cas/{SHA}", DATA)
        spec = RemoteSpec(url=server.url(""), name="cache")
        store = Store(tmp_path / "cache").ensure()
        with Remotes(store, Settings((spec,), None, {}), [open_backend(spec)], verify_signatures=False) as remotes:
            remotes.fetch_blob(RECORD, remotes.backends[0])
    assert store.has("cas", SHA)


def test_a_git_url_on_loopback_is_refused_before_git_runs(tmp_path: Path, monkeypatch) -> None:
    from lwrecipe.inputs.gitsrc import fetch_tree

    monkeypatch.delenv(ALLOW, raising=False)
    store = Store(tmp_path / "cache").ensure()
    with fault_server() as server:
        with pytest.raises(FetchError) as caught:
            fetch_tree(store, "pkg: sources[0]", server.url("/repo.git"), "a" * 40)
        assert server.connections == 0
    assert caught.value.attempts == (
        f"{server.url('/repo.git')}: 127.0.0.1 is a loopback address; refused for a "
        "URL a recipe or project chose (the user's config can allow it: [network] allow_private = "
        '["127.0.0.1"])',
    )


def test_through_a_proxy_the_target_name_is_checked(tmp_path: Path, monkeypatch) -> None:
    from tests.servers import forward_proxy

    monkeypatch.delenv(ALLOW, raising=False)
    with fault_server() as server, forward_proxy() as proxy:
        monkeypatch.setenv("http_proxy", proxy.url)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        server.add("/a", DATA)
        store = Store(tmp_path / "cache").ensure()
        with make_client() as client, pytest.raises(FetchError) as caught:
            Downloader(store, client).fetch(
                Wanted("pkg: sources[0]", SHA, (f"http://localhost:{server.port}/a",), "blob")
            )
        assert server.connections == 0 and not proxy.seen
    assert "is a loopback address" in caught.value.attempts[0]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "::1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "0.1.2.3",
        "224.0.0.1",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::127.0.0.1",
        "64:ff9b::7f00:1",
        "2002:7f00:1::",
        "ff02::1",
        "240.0.0.1",
        "255.255.255.255",
    ],
)
def test_private_addresses_in_every_spelling_are_refused(address: str) -> None:
    from lwrecipe.inputs.addresses import AddressPolicy

    assert AddressPolicy().refusal(address, address) is not None
    assert AddressPolicy.from_env({ALLOW: "0.0.0.0/0 ::/0"}).refusal(address, address) is None


# 203.0.113.80 and 198.18.0.1: documentation and benchmarking ranges, what fake-IP resolvers answer
# public names with (this machine's sandbox resolves deb.debian.org to 203.0.113.80)
@pytest.mark.parametrize(
    "address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "1.1.1.1", "203.0.113.80", "198.18.0.1"]
)
def test_public_addresses_are_reached(address: str) -> None:
    from lwrecipe.inputs.addresses import AddressPolicy

    assert AddressPolicy().refusal(address, address) is None


def test_a_reapi_server_that_stalls_a_read_is_abandoned(tmp_path: Path) -> None:
    """It claims a blob of 1 GiB, sends one byte and stalls: the deadline that size
    would earn is not waited for; the stream is cancelled once it falls below the pace."""
    import time
    from concurrent import futures

    grpc = pytest.importorskip("grpc")
    pytest.importorskip("buildgrid")
    from buildgrid._protos.google.bytestream import bytestream_pb2, bytestream_pb2_grpc

    from lwrecipe.remote.backends.reapi import ReapiBackend

    class Stalling(bytestream_pb2_grpc.ByteStreamServicer):
        def Read(self, request, context):
            yield bytestream_pb2.ReadResponse(data=b"x")
            while context.is_active():
                time.sleep(0.1)

    server = grpc.server(futures.ThreadPoolExecutor(2))
    bytestream_pb2_grpc.add_ByteStreamServicer_to_server(Stalling(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        backend = ReapiBackend(RemoteSpec(url=f"grpc://127.0.0.1:{port}", name="cache", timeout=1.0, min_rate=1 << 20))
        store = Store(tmp_path / "cache").ensure()
        with pytest.raises(RemoteError, match=r"^cache: cas/\w{12}: slower than 1 MiB/s for 1 s; abandoned$"):
            backend.download(store, SHA, 1 << 30, 1 << 30, label="pull", reporter=NullReporter())
        backend.close()
        assert not store.has("cas", SHA)
    finally:
        server.stop(0)
