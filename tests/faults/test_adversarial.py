"""Adversarial input: property-based tests of the recipe loader, the archive
readers and the cpio writer, and a malicious remote cache."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import string
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwrecipe.core.digests import Sha256
from lwrecipe.core.errors import IntegrityError, LwrecipeError, RecipeError, UnsafeArchive
from lwrecipe.initramfs import collect, write_cpio
from lwrecipe.inputs.unpack import unpack
from lwrecipe.recipes.recipe import load_recipe, parse_recipe
from lwrecipe.remote.config import RemoteSpec, Settings
from lwrecipe.remote.remote import Remotes
from lwrecipe.store.archive import extract_canonical, write_tree
from lwrecipe.store.store import Store
from tests.servers import fault_server

pytestmark = pytest.mark.slow

FAST = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

KEYS = [
    "schema",
    "package",
    "name",
    "version",
    "license",
    "sources",
    "url",
    "sha256",
    "strip",
    "dest",
    "git",
    "rev",
    "path",
    "patches",
    "file",
    "source",
    "build",
    "depends",
    "host_tools",
    "env",
    "script",
    "unpack",
    "mirrors",
    "homepage",
    "description",
    "filename",
    "source_date_epoch",
    "x",
]
scalars = st.one_of(
    st.integers(-3, 70),
    st.text(max_size=70),
    st.booleans(),
    st.floats(allow_nan=False),
    st.sampled_from(["1.0", "MIT", "a" * 64, "https://e.org/a.tar.gz", "../x", "/abs", "gpl"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=25,
)
documents = st.dictionaries(st.sampled_from(KEYS), values, max_size=7)


@FAST
@given(documents)
def test_any_toml_document_loads_or_gives_a_recipe_error(doc: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recipes" / "x.toml"
        path.parent.mkdir()
        path.write_text(tomli_w.dumps(doc))
        try:
            load_recipe(path, Path(tmp))
        except RecipeError as exc:
            assert exc.exit_code == 2 and all(line.startswith(str(path)) or "x.toml" in line for line in exc.lines())


@FAST
@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_any_bytes_parse_or_give_a_recipe_error(data: bytes) -> None:
    try:
        parse_recipe(data, "x.toml")
    except RecipeError as exc:
        assert exc.exit_code == 2


def canonical_sample() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "d").mkdir()
        (root / "d" / "f").write_bytes(b"x" * 700)
        (root / "l").symlink_to("d/f")
        os.link(root / "d" / "f", root / "h")
        out = io.BytesIO()
        write_tree(root, out, 0)
        return out.getvalue()


SAMPLE = canonical_sample()


@FAST
@given(
    st.lists(st.tuples(st.integers(0, len(SAMPLE) - 1), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, len(SAMPLE)),
)
def test_mutated_canonical_archives_unpack_safely_or_are_refused(flips: list, cut: int) -> None:
    data = bytearray(SAMPLE)
    for at, value in flips:
        data[at] = value
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "out"
        dest.mkdir()
        stream = io.BytesIO(bytes(data[:cut] if cut else data))
        with contextlib.suppress(UnsafeArchive, OSError, ValueError, UnicodeDecodeError):
            extract_canonical(stream.read, dest)
        for path in Path(tmp).rglob("*"):  # nothing escaped the destination
            assert path == dest or dest in path.parents


@FAST
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b/c", "../up", "/abs", "b/../../x", "ok/f", "s"]),
            st.sampled_from(["file", "dir", "symlink", "hardlink"]),
            st.sampled_from(["a", "../../etc", "/etc/passwd", "b"]),
        ),
        max_size=6,
    )
)
def test_generated_source_tarballs_never_write_outside(entries: list) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "a.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for name, kind, target in entries:
                info = tarfile.TarInfo(name)
                if kind == "file":
                    info.size = 1
                    tar.addfile(info, io.BytesIO(b"x"))
                    continue
                info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE}[kind]
                info.linkname = target
                tar.addfile(info)
        dest = Path(tmp) / "tree" / "src"
        with contextlib.suppress(UnsafeArchive, LwrecipeError):
            unpack(archive, dest, 0, "fuzz")
        for path in Path(tmp).rglob("*"):
            assert path in (archive, dest.parent) or dest == path or dest in path.parents, path


names = st.text(string.ascii_lowercase + string.digits + "._-", min_size=1, max_size=8).filter(
    lambda s: s not in (".", "..")
)


@settings(max_examples=40, deadline=None, database=None)
@given(st.dictionaries(st.lists(names, min_size=1, max_size=3).map("/".join), st.binary(max_size=50), max_size=8))
def test_cpio_writer_round_trips_through_gnu_cpio(files: dict) -> None:
    if shutil.which("cpio") is None:
        pytest.skip("GNU cpio is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        written = {}
        for rel, data in files.items():
            path = root / rel
            if any(p.is_file() for p in [*path.parents][:-1] if root in p.parents or p == root) or path.is_dir():
                continue
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                written[rel] = data
            except (NotADirectoryError, IsADirectoryError, FileExistsError):
                continue
        out = io.BytesIO()
        write_cpio(collect(root, [], []), out, 0)
        listing = (
            subprocess.run(["cpio", "-it", "--quiet"], input=out.getvalue(), capture_output=True, check=True)
            .stdout.decode()
            .split()
        )
        expected = {p.relative_to(root).as_posix() for p in root.rglob("*")}
        assert set(listing) == expected


@pytest.fixture
def remote_store(tmp_path: Path):
    return Store(tmp_path / "cache").ensure()


def record_for(key: str, blob: bytes, **extra) -> bytes:
    doc = {
        "key": key,
        "name": "x",
        "version": "1",
        "output_id": "b" * 64,
        "blob": {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob), "uncompressed_size": 1, "files": 1},
        "log": hashlib.sha256(b"log").hexdigest(),
        "sandbox": "bubblewrap",
        **extra,
    }
    return json.dumps(doc).encode()


def pull(store: Store, url: str, key: str):
    with Remotes.open(store, Settings((RemoteSpec(url=url, name="evil"),), None, {}), verify_signatures=False) as r:
        return r.pull(r.backends[0], Sha256(key))


MALICIOUS = {
    "record for another key": (lambda key, blob: record_for("c" * 64, blob), "record is for key"),
    "record with extra fields": (lambda key, blob: record_for(key, blob, run="rm -rf /"), "fields a build record"),
    "record that is not JSON": (lambda key, blob: b"\x00garbage", "not a build record"),
    "huge record": (lambda key, blob: b" " * (5 << 20), "larger than"),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_records_are_refused(remote_store: Store, case: str) -> None:
    key, blob = "a" * 64, b"blob bytes"
    make, message = MALICIOUS[case]
    with fault_server() as server:
        server.add(f"/ac/{key}", make(key, blob))
        server.add(f"/cas/{hashlib.sha256(blob).hexdigest()}", blob)
        with pytest.raises(IntegrityError, match=message):
            pull(remote_store, server.url(""), key)
    assert not list((remote_store.root / "ac").iterdir()) and not list((remote_store.root / "cas").iterdir())


def test_other_bytes_and_endless_bodies_for_a_blob_are_refused(remote_store: Store) -> None:
    key, blob = "a" * 64, b"the real blob"
    sha = hashlib.sha256(blob).hexdigest()
    with fault_server() as server:
        server.add(f"/ac/{key}", record_for(key, blob))
        server.add(f"/cas/{sha}", b"other bytes!!")
        with pytest.raises(IntegrityError, match="served bytes with another sha256"):
            pull(remote_store, server.url(""), key)
        server.add(f"/cas/{sha}", os.urandom(1 << 22))  # far more than the record's size
        with pytest.raises(LwrecipeError, match="more than the expected 13 bytes"):
            pull(remote_store, server.url(""), key)
    assert not list((remote_store.root / "cas").iterdir()) and not list((remote_store.root / "tmp").iterdir())
