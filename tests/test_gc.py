"""cache gc: the LRU policy on plain values, and collection on a real store."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from lwrecipe.core.digests import Sha256, sha256_bytes
from lwrecipe.core.errors import UsageError
from lwrecipe.core.record import Blob, BuildRecord
from lwrecipe.core.sizes import parse_size
from lwrecipe.store.gc import Unit, collect, select
from lwrecipe.store.store import Store

DAY = 86400.0


@pytest.mark.parametrize(
    "text, size",
    [("123", 123), ("1K", 1024), ("500M", 500 << 20), ("10G", 10 << 30), ("1.5GiB", 3 << 29), ("2 MB", 2 << 20)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "ten", "10X", "-1G"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="--max-size"):
        parse_size(text)


def unit(label: str, size: int, age_days: float, pinned: bool = False) -> Unit:
    return Unit(label, [], size, 100 * DAY - age_days * DAY, pinned)


def labels(units: list[Unit]) -> list[str]:
    return [u.label for u in units]


def test_select_by_age_keeps_recent_and_pinned() -> None:
    found = [unit("old", 1, 30), unit("new", 1, 1), unit("pinned", 1, 90, pinned=True)]
    assert labels(select(found, 100 * DAY, None, 7)) == ["old"]


def test_select_by_size_removes_least_recently_used_first() -> None:
    found = [unit("a", 40, 3), unit("b", 40, 2), unit("c", 40, 1), unit("d", 40, 5, pinned=True)]
    assert labels(select(found, 100 * DAY, 100, None)) == ["a", "b"]


def test_select_nothing_when_it_fits() -> None:
    assert select([unit("a", 10, 50)], 100 * DAY, 10, None) == []


def put_record(store: Store, name: str, payload: bytes, age_days: float) -> tuple[str, str]:
    blob = store.put_bytes("cas", payload).name
    log = store.put_bytes("cas", b"log of " + payload).name
    key = hashlib.sha256(name.encode()).hexdigest()
    store.put_record(
        BuildRecord(
            key=Sha256(key),
            name=name,
            output_id=sha256_bytes(payload),
            blob=Blob(sha256=Sha256(blob), size=len(payload)),
            log=Sha256(log),
        )
    )
    when = time.time() - age_days * DAY
    for path in (store.path("ac", key), store.path("cas", blob), store.path("cas", log)):
        os.utime(path, (when, when))
    return key, blob


def test_collect_removes_records_with_their_blobs_and_keeps_shared_ones(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache").ensure()
    old_key, old_blob = put_record(store, "old", b"x" * 1000, 30)
    new_key, new_blob = put_record(store, "new", b"y" * 1000, 0)
    twin_key, twin_blob = put_record(store, "twin", b"y" * 1000, 40)  # same output as "new"
    assert twin_blob == new_blob
    report = collect(store, None, 7)
    assert sorted(u.label for u in report.removed) == sorted([f"ac/{old_key}", f"ac/{twin_key}"])
    assert not store.has("ac", old_key) and not store.has("cas", old_blob)
    assert not store.has("ac", twin_key)
    assert store.has("ac", new_key) and store.has("cas", new_blob)
    assert store.verify_all().quarantined == []


def test_collect_keep_locked_and_dry_run(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache").ensure()
    key, blob = put_record(store, "locked", b"z" * 100, 365)
    assert collect(store, 0, None, dry_run=True).removed and store.has("ac", key)
    assert collect(store, 0, None, pinned={key}).removed == []
    assert store.has("cas", blob)


def test_cli_gc(project, cli) -> None:
    store = Store(project.root / "cache").ensure()
    key, _ = put_record(store, "old", b"q" * 10, 10)
    project.file("lockfile.toml", f'lockfile = 1\n[recipe.old]\nkey = "{key}"\n')
    assert cli("cache", "gc").code == 2
    result = cli("cache", "gc", "--older-than", "1", "--keep-locked")
    assert result.code == 0 and "removed 0 entries" in result.err
    result = cli("cache", "gc", "--older-than", "1")
    assert result.code == 0 and f"removed ac/{key}" in result.out


def test_an_unpacked_environment_goes_with_the_last_record_of_its_output(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache").ensure()
    put_record(store, "old-env", b"o" * 1000, 30)
    put_record(store, "env", b"e" * 1000, 0)
    old, kept = hashlib.sha256(b"o" * 1000).hexdigest(), hashlib.sha256(b"e" * 1000).hexdigest()
    for output in (old, kept):
        (store.root / "envs" / output / "usr" / "bin").mkdir(parents=True)
        (store.root / "envs" / output / "usr" / "bin" / "sh").write_text("#!\n")
        (store.root / "merkle").mkdir(exist_ok=True)
        (store.root / "merkle" / output).write_bytes(b"its Merkle tree, kept by build --executor")
    assert collect(store, None, 7, dry_run=True).removed and (store.root / "envs" / old).is_dir()
    collect(store, None, 7)
    assert sorted(p.name for p in (store.root / "envs").iterdir()) == [kept]
    assert sorted(p.name for p in (store.root / "merkle").iterdir()) == [kept]
