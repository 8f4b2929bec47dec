"""Every remote backend keeps the one `Backend` protocol (remote/backends/base.py):
the same methods with the same parameters, and the same answers from a real
directory, a real nginx WebDAV server and a real BuildGrid on 127.0.0.1."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lwrecipe.core.digests import Sha256
from lwrecipe.core.errors import IntegrityError, RemoteError, UsageError
from lwrecipe.core.record import Blob, BuildRecord
from lwrecipe.inputs.fetch import NullReporter
from lwrecipe.remote.backends.base import Backend, Entry
from lwrecipe.remote.backends.directory import DirBackend
from lwrecipe.remote.backends.http import HttpBackend, Member, parse_multistatus
from lwrecipe.remote.backends.opening import open_backend, open_reapi
from lwrecipe.remote.backends.reapi import ReapiBackend
from lwrecipe.remote.config import RemoteSpec
from lwrecipe.store.store import Store
from tests.servers import buildgrid_server, nginx_server

DATA = b"a blob a remote holds\n" * 4096
SHA = Sha256(hashlib.sha256(DATA).hexdigest())
KEY = Sha256("ab" * 32)
# what a REAPI server's action result for ac/<key> names: the record's blobs
RECORD = BuildRecord(
    key=KEY, name="pkg", output_id=Sha256("cd" * 32), blob=Blob(sha256=SHA, size=len(DATA)), log=SHA
).to_json()

PROTOCOL = [name for name in vars(Backend) if not name.startswith("_") and callable(vars(Backend)[name])]


@pytest.mark.parametrize("backend", [DirBackend, HttpBackend, ReapiBackend], ids=lambda c: c.__name__)
def test_every_backend_has_the_protocol_s_methods_and_parameters(backend: type) -> None:
    assert {"exists", "read_small", "download", "upload", "listing", "delete", "close"} <= set(PROTOCOL)
    for name in PROTOCOL:
        assert inspect.signature(getattr(backend, name)) == inspect.signature(getattr(Backend, name)), name
    assert "spec" in inspect.get_annotations(backend)


@dataclass
class Served:
    backend: Backend
    stored: Path  # where the server keeps cas/<sha256>, to tamper with it
    collects: bool = True  # lists and deletes (a REAPI server collects its own storage)


@pytest.fixture(params=["directory", "webdav", "reapi"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    if request.param == "directory":
        backend = open_backend(RemoteSpec(url=f"file://{tmp_path / 'remote'}", name="cache"))
        yield Served(backend, tmp_path / "remote" / "cas" / SHA)
    elif request.param == "webdav":
        with nginx_server(tmp_path / "nginx", listing=True) as url:
            backend = open_backend(RemoteSpec(url=url, name="cache"))
            yield Served(backend, tmp_path / "nginx" / "www" / "cas" / SHA)
    else:
        pytest.importorskip("grpc")
        with buildgrid_server(tmp_path / "buildgrid") as (url, cas):
            backend = open_backend(RemoteSpec(url=url, name="cache"))
            yield Served(backend, cas / "cas" / "objects" / SHA[:2] / SHA[2:], collects=False)  # BuildGrid's layout
    backend.close()


def put(backend: Backend, tmp_path: Path, kind: str, name: str, data: bytes) -> None:
    path = tmp_path / f"upload-{kind}"
    path.write_bytes(data)
    backend.upload(kind, name, path, NullReporter())


def test_what_is_uploaded_is_there_and_comes_back_verified(served: Served, tmp_path: Path) -> None:
    backend = served.backend
    assert not backend.exists("ac", KEY) and backend.read_small("ac", KEY, 1 << 20) is None
    put(backend, tmp_path, "cas", SHA, DATA)
    put(backend, tmp_path, "ac", KEY, RECORD)
    assert backend.exists("cas", SHA, len(DATA)) and backend.exists("ac", KEY)
    assert backend.read_small("ac", KEY, 1 << 20) == RECORD
    with pytest.raises(IntegrityError, match=r"larger than 10 bytes; refused"):
        backend.read_small("ac", KEY, 10)
    store = Store(tmp_path / "cache").ensure()
    backend.download(store, SHA, len(DATA), len(DATA), label="pull", reporter=NullReporter())
    assert store.path("cas", SHA).read_bytes() == DATA


def test_a_tampered_blob_is_refused(served: Served, tmp_path: Path) -> None:
    put(served.backend, tmp_path, "cas", SHA, DATA)
    served.stored.write_bytes(DATA[:-3] + b"xyz")
    store = Store(tmp_path / "cache").ensure()
    with pytest.raises(IntegrityError, match=r"cache: cas/\w{12}: served bytes with another sha256; refused"):
        served.backend.download(store, SHA, len(DATA), len(DATA), label="pull", reporter=NullReporter())
    assert not store.has("cas", SHA)


def test_a_listing_gives_entries_and_a_deleted_one_is_gone(served: Served, tmp_path: Path) -> None:
    backend = served.backend
    put(backend, tmp_path, "cas", SHA, DATA)
    put(backend, tmp_path, "sig", f"{KEY}/{SHA}", RECORD)
    if not served.collects:
        with pytest.raises(RemoteError, match="collects its own storage"):
            backend.listing("cas")
        return
    [entry] = backend.listing("cas")
    assert isinstance(entry, Entry) and (entry.kind, entry.name, entry.size) == ("cas", SHA, len(DATA))
    assert [e.name for e in backend.listing("sig")] == [f"{KEY}/{SHA}"]
    backend.delete("cas", SHA)
    backend.delete("sig", f"{KEY}/{SHA}")
    backend.delete("cas", SHA)  # not there any more: nothing to do
    assert not backend.exists("cas", SHA) and backend.listing("cas") == [] and backend.listing("sig") == []


def test_an_executor_is_opened_only_for_a_reapi_server(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a REAPI server"):
        open_reapi(RemoteSpec(url=f"file://{tmp_path}", name="cache"))
    with pytest.raises(UsageError, match="auth_env LW_TEST_TOKEN is not set"):
        open_backend(RemoteSpec(url="https://cache.example", name="cache", auth_env="LW_TEST_TOKEN"), env={})


MULTISTATUS = b"""<?xml version="1.0" encoding="utf-8"?>
<D:multistatus xmlns:D="DAV:">
 <D:response><D:href>/base/sig/</D:href>
  <D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop></D:propstat></D:response>
 <D:response><D:href>/base/sig/k%20ey/</D:href>
  <D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop></D:propstat></D:response>
 <D:response><D:href>http://cache.example/base/sig/one</D:href>
  <D:propstat><D:prop><D:resourcetype/><D:getcontentlength>12</D:getcontentlength>
   <D:getlastmodified>Mon, 01 Jan 2001 00:00:00 GMT</D:getlastmodified></D:prop></D:propstat></D:response>
 <D:response><D:href>/base/sig/undated</D:href><D:propstat><D:prop/></D:propstat></D:response>
 <D:response><D:href>http://[::1/broken</D:href></D:response>
</D:multistatus>
"""


def test_a_propfind_answer_lists_the_members_but_the_collection_itself() -> None:
    members = parse_multistatus(MULTISTATUS, "http://cache.example/base/sig/", "cache: PROPFIND sig/")
    assert members == [
        Member("k ey", True, 0, 0.0),
        Member("one", False, 12, 978307200.0),
        Member("undated", False, 0, 0.0),
    ]
    with pytest.raises(RemoteError, match=r"^cache: PROPFIND sig/: not a WebDAV answer \("):
        parse_multistatus(b"<html>", "http://cache.example/base/sig/", "cache: PROPFIND sig/")
