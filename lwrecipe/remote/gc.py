"""Garbage collection of a remote cache, rooted in lockfiles.

Nix binary caches cannot be collected (they have no roots). Here the roots are the
build keys of the releases' lockfiles: their records, the blobs those records
name (output and log), their co-signatures and provenance are kept. Everything
else is a candidate: a record with its co-signatures and provenance and the
blobs no surviving record names, or a blob no record names at all. Candidates
go oldest first, all of them, or only those older than --older-than, or only
until the remote fits in --max-size.

A push racing the collection is never left with a record and no blob: nothing
younger than the grace period (default one hour) is removed, so blobs a push has
just uploaded stay; records go before their blobs; and a push checks, after
uploading a record, that the blobs it names are still there (uploading again
any that a collection removed meanwhile: remote.Remotes.push).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from ..core.record import LIMIT, BuildRecord, NotARecord
from .backends.base import Backend, Entry

AREAS = ("ac", "cas", "sig", "prov")


@dataclass
class Unit:
    """What goes together: a record and what only it needs, or an orphan blob."""

    label: str
    entries: list[Entry]
    mtime: float  # the record's (or the orphan blob's): its age
    blobs: tuple[str, ...] = ()  # the blobs the record names

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)


@dataclass
class RemoteReport:
    removed: list[Unit] = field(default_factory=list)
    freed: int = 0
    kept_entries: int = 0
    remaining: int = 0
    roots_missing: list[str] = field(default_factory=list)  # lockfile keys the remote does not hold
    young: int = 0  # candidates spared because they are within the grace period


def _names(record_data: bytes | None) -> tuple[str, ...]:
    try:
        record = BuildRecord.from_json(record_data, "record") if record_data is not None else None
    except NotARecord:
        return ()  # not a record: nothing it names is kept for it
    return (record.blob.sha256, record.log) if record is not None else ()


def collect_remote(
    backend: Backend,
    roots: set[str],
    now: float,
    max_size: int | None = None,
    older_than_days: float | None = None,
    grace_s: float = 3600.0,
    dry_run: bool = False,
) -> RemoteReport:
    listed = {area: backend.listing(area) for area in AREAS}
    report = RemoteReport()
    records = {e.name: e for e in listed["ac"]}
    by_key: dict[str, list[Entry]] = defaultdict(list)  # co-signatures and provenance, by record key
    for entry in listed["sig"]:
        by_key[entry.name.split("/", 1)[0]].append(entry)
    for entry in listed["prov"]:
        by_key[entry.name].append(entry)
    blobs = {e.name: e for e in listed["cas"]}

    names: dict[str, tuple[str, ...]] = {key: _names(backend.read_small("ac", key, LIMIT)) for key in records}
    report.roots_missing = sorted(k for k in roots if k not in records)
    kept_blobs = {b for key in roots if key in records for b in names[key]}
    users: dict[str, set[str]] = defaultdict(set)  # blob -> records naming it
    for key, named in names.items():
        for blob in named:
            users[blob].add(key)

    units = [
        Unit(f"ac/{key[:12]}", [entry, *by_key.get(key, [])], entry.mtime, names[key])
        for key, entry in records.items()
        if key not in roots
    ]
    units += [
        Unit(f"cas/{name[:12]}", [entry], entry.mtime)
        for name, entry in blobs.items()
        if not users.get(name) and name not in kept_blobs
    ]
    units += [
        Unit(f"{entries[0].kind}/{key[:12]} (no record)", entries, max(e.mtime for e in entries))
        for key, entries in by_key.items()
        if key not in records
    ]

    total = sum(e.size for area in AREAS for e in listed[area])
    candidates = sorted(units, key=lambda u: (u.mtime, u.label))
    if older_than_days is not None:
        candidates = [u for u in candidates if u.mtime < now - older_than_days * 86400]
    young = [u for u in candidates if u.mtime > now - grace_s]
    report.young = len(young)
    candidates = [u for u in candidates if u not in young]
    removed_records: set[str] = set()
    for unit in candidates:
        if max_size is not None and total <= max_size:
            break
        entries = list(unit.entries)
        if unit.label.startswith("ac/"):
            key = unit.entries[0].name
            removed_records.add(key)
            for blob in unit.blobs:  # a blob goes with the last record that names it, unless a root needs it
                blob_entry = blobs.get(blob)
                if (
                    blob_entry is not None
                    and blob not in kept_blobs
                    and users[blob] <= removed_records
                    and blob_entry.mtime <= now - grace_s
                ):
                    entries.append(blob_entry)
                    blobs.pop(blob)
        unit.entries = entries
        report.removed.append(unit)
        total -= unit.size
    if not dry_run:
        for unit in report.removed:
            # the record first: a record is never left without its blobs, only blobs without a record
            for entry in sorted(unit.entries, key=lambda e: e.kind == "cas"):
                backend.delete(entry.kind, entry.name)
    report.freed = sum(u.size for u in report.removed)
    report.remaining = total
    report.kept_entries = sum(len(listed[a]) for a in AREAS) - sum(len(u.entries) for u in report.removed)
    return report
