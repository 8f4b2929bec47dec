"""Freeing cache space: `lwrecipe cache gc`, least recently used first.

A build record and the blobs it names (output and log) go together; blobs no
record names and downloaded sources go on their own. "Used" is the access time
lwrecipe sets on every cache hit (Store.touch). The policy (`select`) is pure;
`collect` applies it under the cache's exclusive `gc` lock, so it never removes
what a running build is using.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core.files import remove_tree
from ..core.record import BuildRecord, NotARecord
from .outputs import MERKLE, SHARED
from .store import Store


@dataclass
class Unit:
    """What gc removes together."""

    label: str  # "ac/<key>", "cas/<sha>" or "sources/<sha>"
    paths: list[Path]
    size: int
    last_used: float
    pinned: bool = False
    output_id: str = ""  # a record's


@dataclass
class GcReport:
    removed: list[Unit] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # kept failed builds removed
    kept: int = 0
    freed: int = 0
    remaining: int = 0


def _atime(path: Path) -> float:
    return path.stat().st_atime


def _read_quietly(path: Path) -> bytes:
    """Read without moving the access time that records when the entry was last used."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOATIME)
    except PermissionError:  # O_NOATIME needs ownership
        fd = os.open(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def units(store: Store, pinned: set[str]) -> list[Unit]:
    """Every removable unit of the cache. `pinned` holds keys and output ids to keep.
    A record's last use is its own access time (a hit touches the record and its blob)."""
    out: list[Unit] = []
    named: set[str] = set()
    for path in sorted((store.root / "ac").iterdir()):
        used = _atime(path)
        data = _read_quietly(path)
        try:
            record: BuildRecord | None = BuildRecord.from_json(data, f"ac/{path.name}", len(data))
        except NotARecord:
            record = None  # not a record: nothing it names is kept for it
        blobs = [record.blob.sha256, record.log] if record is not None else []
        files = [path] + [store.root / "cas" / b for b in blobs if (store.root / "cas" / b).is_file()]
        named.update(blobs)
        output_id = record.output_id if record is not None else ""
        keep = path.name in pinned or output_id in pinned
        out.append(Unit(f"ac/{path.name}", files, sum(f.stat().st_size for f in files), used, keep, output_id))
    for kind in ("cas", "sources"):
        for path in sorted((store.root / kind).iterdir()):
            if kind == "cas" and path.name in named:
                continue
            out.append(Unit(f"{kind}/{path.name}", [path], path.stat().st_size, _atime(path), path.name in pinned))
    return out


def select(all_units: list[Unit], now: float, max_size: int | None, older_than_days: float | None) -> list[Unit]:
    """The units to remove: every unpinned one unused for longer than the age limit,
    then the least recently used until the rest fits in max_size."""
    doomed: list[Unit] = []
    alive = sorted(all_units, key=lambda u: (u.last_used, u.label))
    if older_than_days is not None:
        limit = now - older_than_days * 86400
        doomed = [u for u in alive if u.last_used < limit and not u.pinned]
        alive = [u for u in alive if not (u.last_used < limit and not u.pinned)]
    if max_size is not None:
        total = sum(u.size for u in alive)
        for unit in alive:
            if total <= max_size:
                break
            if not unit.pinned:
                doomed.append(unit)
                total -= unit.size
    return doomed


def collect(
    store: Store,
    max_size: int | None,
    older_than_days: float | None,
    pinned: set[str] | None = None,
    dry_run: bool = False,
) -> GcReport:
    report = GcReport()
    if not store.exists():
        return report
    with store.lock("gc"):
        found = units(store, pinned or set())
        doomed = select(found, time.time(), max_size, older_than_days)
        gone = {u.label for u in doomed}
        shared = {p.name for u in found if u.label not in gone and u.label.startswith("ac/") for p in u.paths[1:]}
        for unit in doomed:
            report.removed.append(unit)
            report.freed += unit.size
            if dry_run:
                continue
            # The record goes first: a record without its blob would be dropped as corrupt anyway.
            for path in unit.paths:
                if path.name not in shared or path.parent.name == "ac":
                    path.unlink(missing_ok=True)
        _drop_dangling_git_refs(store)
        _drop_facts_without_blobs(store)
        _drop_notes_without_records(store)
        if not dry_run:
            _drop_unpacked_without_records(store, {u.output_id for u in found if u.label not in gone})
        report.kept = len(found) - len(doomed)
        report.remaining = sum(u.size for u in found if u.label not in gone)
        report.failed = _old_failures(store, time.time(), older_than_days, dry_run)
    return report


KEPT_FAILED_DAYS = 7.0


def _old_failures(store: Store, now: float, older_than_days: float | None, dry_run: bool) -> list[str]:
    """Build directories `build --keep-failed` kept (failed/<recipe>), removed once
    untouched for a week (or for --older-than DAYS, when that is sooner)."""
    kept = store.root / "failed"
    days = min(KEPT_FAILED_DAYS, older_than_days) if older_than_days is not None else KEPT_FAILED_DAYS
    gone = []
    for tree in sorted(kept.iterdir()) if kept.is_dir() else []:
        if now - tree.lstat().st_mtime > days * 86400:
            gone.append(f"failed/{tree.name}")
            if not dry_run:
                remove_tree(tree)
    return gone


def _drop_unpacked_without_records(store: Store, output_ids: set[str]) -> None:
    """envs/<output id> is an environment unpacked for builds to share; once no record
    names that output it is only space (builds hold the shared lock, gc the exclusive one)."""
    shared = store.root / SHARED
    if shared.is_dir():
        for tree in shared.iterdir():
            if tree.name not in output_ids:
                shutil.rmtree(tree, ignore_errors=True)
    merkle = store.root / MERKLE  # the Merkle tree remote execution keeps of such an output
    if merkle.is_dir():
        for saved in merkle.iterdir():
            if saved.name not in output_ids:
                saved.unlink(missing_ok=True)


def _drop_facts_without_blobs(store: Store) -> None:
    """checked/<blob> says what a blob holds; with the blob gone it is only clutter."""
    checked = store.root / "checked"
    if checked.is_dir():
        for fact in checked.iterdir():
            if not store.has("cas", fact.name):
                fact.unlink(missing_ok=True)


def _drop_notes_without_records(store: Store) -> None:
    """pulled/<key> (where a record came from) and provenance/<key> (its signed
    provenance) are about a record; with the record gone they are clutter."""
    for area in ("pulled", "provenance"):
        notes = store.root / area
        if notes.is_dir():
            for note in notes.iterdir():
                if not store.has("ac", note.name):
                    note.unlink(missing_ok=True)


def _drop_dangling_git_refs(store: Store) -> None:
    refs = store.root / "refs"
    if not refs.is_dir():
        return
    for ref in refs.iterdir():
        if ref.name.endswith(".commit"):
            continue
        sha = ref.read_text(errors="replace").strip() if ref.is_file() else ""
        if not store.has("sources", sha):
            ref.unlink(missing_ok=True)
    for commit in refs.glob("*.commit"):  # a tree's commit object goes with its ref
        if not commit.with_suffix("").exists():
            commit.unlink(missing_ok=True)
