"""Packing a tree into the store and restoring it: both hashes are checked on the way back."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import zstandard

from lwrecipe.core.errors import IntegrityError
from lwrecipe.store.archive import tree_sha256
from lwrecipe.store.outputs import pack, recheck_facts, restore
from lwrecipe.store.store import Store


@pytest.fixture
def packed(tmp_path: Path):
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "tool").write_bytes(os.urandom(3 << 20) + b"x" * (2 << 20))
    (tree / "bin" / "tool").chmod(0o755)
    (tree / "README").write_text("hello\n" * 1000)
    (tree / "link").symlink_to("bin/tool")
    store = Store(tmp_path / "cache").ensure()
    return store, tree, pack(store, tree, 315532800)


def put(store: Store, data: bytes) -> str:
    store.put_bytes("cas", data)
    return hashlib.sha256(data).hexdigest()


def archive_of(store: Store, blob: str) -> bytes:
    return (
        zstandard.ZstdDecompressor().stream_reader(store.path("cas", blob).read_bytes(), read_across_frames=True).read()
    )


def test_round_trip(packed, tmp_path: Path) -> None:
    store, tree, p = packed
    restore(store, p.blob, p.output_id, tmp_path / "out")
    assert tree_sha256(tmp_path / "out", 315532800) == tree_sha256(tree, 315532800) == p.output_id
    assert hashlib.sha256(archive_of(store, p.blob)).hexdigest() == p.output_id


def test_a_blob_of_several_frames_restores(packed, tmp_path: Path) -> None:
    store, _, p = packed
    archive = archive_of(store, p.blob)
    compressor = zstandard.ZstdCompressor(level=3)
    half = len(archive) // 2
    blob = put(store, compressor.compress(archive[:half]) + compressor.compress(archive[half:]))
    restore(store, blob, p.output_id, tmp_path / "out")
    assert tree_sha256(tmp_path / "out", 315532800) == p.output_id


@pytest.mark.parametrize("damage", ["truncated", "trailing garbage", "flipped byte"])
def test_a_damaged_blob_is_refused_and_deleted(packed, tmp_path: Path, damage: str) -> None:
    store, _, p = packed
    data = store.path("cas", p.blob).read_bytes()
    bad = {
        "truncated": data[: len(data) // 2],
        "trailing garbage": data + b"garbage",
        "flipped byte": data[:1000] + bytes([data[1000] ^ 1]) + data[1001:],
    }[damage]
    store.path("cas", p.blob).chmod(0o644)
    store.path("cas", p.blob).write_bytes(bad)  # the blob keeps its name: its bytes no longer match it
    with pytest.raises(IntegrityError, match=p.blob):
        restore(store, p.blob, p.output_id, tmp_path / "out")
    assert not store.path("cas", p.blob).exists()
    assert not (tmp_path / "out").exists()


def test_a_record_naming_the_wrong_output_id_is_refused(packed, tmp_path: Path) -> None:
    """The blob is intact, but it is not the tree the record says: the archive is hashed too."""
    store, _, p = packed
    with pytest.raises(IntegrityError, match="output id"):
        restore(store, p.blob, "0" * 64, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_pack_records_what_its_blob_holds(packed) -> None:
    store, _, p = packed
    assert store.checked(p.blob) == p.output_id


def test_a_blob_without_a_known_output_id_is_hashed_once(packed, tmp_path: Path) -> None:
    """As for a blob pulled from a remote: the first restore hashes the archive and
    records the fact; a record naming anything else is checked again and refused."""
    store, _, p = packed
    (store.root / "checked" / p.blob).unlink()
    restore(store, p.blob, p.output_id, tmp_path / "first")
    assert store.checked(p.blob) == p.output_id
    with pytest.raises(IntegrityError, match="output id"):
        restore(store, p.blob, "1" * 64, tmp_path / "other")


def test_a_known_output_id_is_not_hashed_again(packed, tmp_path: Path) -> None:
    """Shown by planting a false fact: restore believes it, so it did not hash the archive.
    (The blob itself is still checked against its name: see the damaged-blob tests.)"""
    store, _, p = packed
    store.mark_checked(p.blob, "2" * 64)
    restore(store, p.blob, "2" * 64, tmp_path / "out")
    assert tree_sha256(tmp_path / "out", 315532800) == p.output_id


def test_gc_drops_facts_with_their_blobs(packed) -> None:
    from lwrecipe.store.gc import collect

    store, _, p = packed
    store.path("cas", p.blob).unlink()
    collect(store, max_size=None, older_than_days=None)
    assert store.checked(p.blob) is None


def test_verify_rechecks_facts(packed, tmp_path: Path) -> None:
    store, tree, p = packed
    other = put(store, zstandard.ZstdCompressor().compress(b"not the tree"))
    store.mark_checked(other, p.output_id)  # false: restoring under this fact would skip the archive hash
    store.mark_checked("3" * 64, p.output_id)  # its blob is not in the store
    (store.root / "checked" / "not-a-blob-name").write_text(p.output_id)
    assert recheck_facts(store) == (3, [f"checked/{other}", "checked/not-a-blob-name"])
    assert sorted(f.name for f in (store.root / "checked").iterdir()) == [p.blob]
    assert store.checked(p.blob) == p.output_id
    assert recheck_facts(store) == (1, [])
