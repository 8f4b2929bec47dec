"""The local content-addressed cache: cas/, ac/, sources/ and tmp/ (DESIGN.md "Store layout").

Every write is staged in tmp/, fsynced and renamed into place; every read is
checked against the name it is stored under, and an entry that fails is never
used: it is moved to quarantine/ with a note of what it was and why, so the
evidence of tampering or of a failing disk is kept. Deciding what to build is
not this module's job.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ..core import faults
from ..core.digests import Sha256, canonical_json, is_sha256
from ..core.errors import HashMismatch, IntegrityError
from ..core.files import fsync_dir, replace_text
from ..core.record import BuildRecord, NotARecord
from .staging import Staged

KINDS = ("cas", "ac", "sources")
READ_CHUNK = 1 << 20
QUARANTINE = "quarantine"


def misnamed(actual: str, name: str) -> str:
    """Why an entry is quarantined when its bytes do not hash to its name."""
    return f"sha256 {actual}, not the {name} it is named by"


def file_sha256(path: Path) -> Sha256:
    with path.open("rb") as fh:
        return Sha256(hashlib.file_digest(fh, "sha256").hexdigest())


@dataclass(frozen=True)
class Quarantined:
    area: str  # cas, ac or sources
    name: str
    moved: Path  # where it went
    why: str

    def line(self, root: Path) -> str:
        return f"{self.area}/{self.name} -> {self.moved.relative_to(root)}: {self.why}"


@dataclass
class VerifyReport:
    checked: int = 0
    quarantined: list[Quarantined] = field(default_factory=list)
    stale_tmp: int = 0


STALE_TMP_SECONDS = 24 * 3600


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root

    def exists(self) -> bool:
        return (self.root / "cas").is_dir()

    def ensure(self) -> Store:
        for sub in (*KINDS, "tmp", "locks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        return self

    def path(self, kind: str, name: str) -> Path:
        if kind not in KINDS or not is_sha256(name):
            raise ValueError(f"bad store entry {kind}/{name}")
        return self.root / kind / name

    def has(self, kind: str, name: str) -> bool:
        return is_sha256(name) and self.path(kind, name).is_file()

    @contextlib.contextmanager
    def staging(self) -> Iterator[Staged]:
        """A temporary file in tmp/ that is removed unless `commit` moved it."""
        self.ensure()
        fd, name = tempfile.mkstemp(dir=self.root / "tmp", prefix="stage-")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                yield Staged(path, fh)
        finally:
            path.unlink(missing_ok=True)

    def commit(self, staged: Staged, kind: str, name: str | None = None) -> Path:
        """fsync the staged file and rename it to `kind/name` (default: its own sha256).
        For cas/ and sources/ the name must be the sha256 of what was written."""
        digest = staged.hexdigest()
        name = name or digest
        if kind != "ac" and name != digest:
            raise HashMismatch(f"{kind}/{name}", name, digest)
        staged.fh.flush()
        os.fsync(staged.fh.fileno())
        staged.fh.close()
        final = self.path(kind, name)
        os.chmod(staged.path, 0o644)
        faults.point("commit")
        os.replace(staged.path, final)
        faults.point("renamed")
        fsync_dir(final.parent)
        return final

    def put_bytes(self, kind: str, data: bytes, name: str | None = None) -> Path:
        with self.staging() as staged:
            staged.write(data)
            return self.commit(staged, kind, name)

    def put_file(self, kind: str, source: BinaryIO, name: str | None = None) -> Path:
        with self.staging() as staged:
            while chunk := source.read(READ_CHUNK):
                staged.write(chunk)
            return self.commit(staged, kind, name)

    def quarantine(self, path: Path, reason: str) -> Path:
        """Move a corrupt entry out of use, to quarantine/<UTC time>-<area>-<name>, with
        `<that>.note` saying what it was and why; returns where it went. Nothing
        corrupt is deleted where it is found: an auditor can show what was wrong."""
        directory = self.root / QUARANTINE
        directory.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        dest = directory / f"{stamp}-{path.parent.name}-{path.name}"
        n = 1
        while dest.exists():
            dest = directory / f"{stamp}-{path.parent.name}-{path.name}.{n}"
            n += 1
        try:
            os.replace(path, dest)
        except FileNotFoundError:  # another process moved it first
            return dest
        note = {"was": f"{path.parent.name}/{path.name}", "reason": reason, "when": stamp}
        dest.with_name(dest.name + ".note").write_text(json.dumps(note, indent=1) + "\n")
        fsync_dir(directory)
        return dest

    def verify_blob(self, kind: str, name: str) -> Path | None:
        """The entry's path if its bytes hash to its name; a corrupt entry is quarantined."""
        path = self.path(kind, name)
        if not path.is_file():
            return None
        actual = file_sha256(path)
        if actual != name:
            self.quarantine(path, misnamed(actual, name))
            return None
        self.touch(kind, name)
        return path

    def read_blob(self, kind: str, name: str) -> bytes:
        path = self.path(kind, name)
        data = path.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != name:
            moved = self.quarantine(path, misnamed(actual, name))
            raise IntegrityError(f"{path}: contents do not match their name (moved to {moved})")
        return data

    @contextlib.contextmanager
    def open_blob(self, kind: str, name: str) -> Iterator[BinaryIO]:
        """A stored entry to stream (a log of any size), hashed before it is handed
        out: one that does not match its name is quarantined, as by read_blob."""
        path = self.path(kind, name)
        with path.open("rb") as fh:
            actual = hashlib.file_digest(fh, "sha256").hexdigest()
            if actual != name:
                moved = self.quarantine(path, misnamed(actual, name))
                raise IntegrityError(f"{path}: contents do not match their name (moved to {moved})")
            fh.seek(0)
            yield fh

    def put_record(self, record: BuildRecord) -> Path:
        return self.put_bytes("ac", record.to_json(), name=record.key)

    def read_record(self, key: Sha256) -> BuildRecord | None:
        """The build record for `key`, or None. What is not a build record, or
        names another key, is quarantined."""
        path = self.path("ac", key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        record = _record(data, key)
        if record is None:
            self.quarantine(path, "not a build record for the key it is named by")
        return record

    def output_id(self, key: Sha256) -> Sha256 | None:
        """The output id the record stored for `key` names, or None (no cache, no record)."""
        record = self.read_record(key) if self.exists() else None
        return record.output_id if record else None

    @contextlib.contextmanager
    def lock(self, name: str, shared: bool = False) -> Iterator[None]:
        """An advisory lock shared by every process using this cache: exclusive,
        or shared with other shared holders (builds share `gc`; gc takes it alone)."""
        self.ensure()
        with open(self.root / "locks" / name, "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def set_last(self, recipe: str, key: Sha256) -> None:
        """Remember the key a recipe was last built or used under (for `lwrecipe why`)."""
        path = self.root / "last" / recipe
        try:
            if path.read_text() == key:
                return
        except FileNotFoundError:
            pass
        replace_text(path, key, self.root / "tmp")

    def last(self, recipe: str) -> Sha256 | None:
        try:
            key = (self.root / "last" / recipe).read_text().strip()
        except FileNotFoundError:
            return None
        return Sha256(key) if is_sha256(key) else None

    def mark_checked(self, blob: Sha256, output_id: Sha256) -> None:
        """Record the fact that blob `blob` decompresses to the archive `output_id`
        (a fact about the blob's bytes, so it stays true whatever else changes)."""
        replace_text(self.root / "checked" / blob, output_id, self.root / "tmp")

    def put_provenance(self, key: Sha256, envelope: dict[str, Any]) -> None:
        """The signed provenance (a DSSE envelope) of the record for `key`."""
        replace_text(self.root / "provenance" / key, canonical_json(envelope), self.root / "tmp")

    def read_provenance(self, key: Sha256) -> bytes | None:
        try:
            return (self.root / "provenance" / key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def mark_pulled(self, key: Sha256, remote: str) -> None:
        """Record that the record for `key` came from `remote` and was not built here:
        this store's key never co-signs what it did not reproduce."""
        replace_text(self.root / "pulled" / key, remote, self.root / "tmp")

    def pulled_from(self, key: Sha256) -> str | None:
        """The remote the record for `key` was pulled from; None when it was built here
        (or a build here reproduced it: see mark_reproduced)."""
        try:
            return (self.root / "pulled" / key).read_text()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def mark_reproduced(self, key: Sha256) -> None:
        """A build here made the same output as the pulled record for `key`."""
        (self.root / "pulled" / key).unlink(missing_ok=True)

    def checked(self, blob: Sha256) -> Sha256 | None:
        """The output id `blob` was seen to hold, by pack or by a restore that hashed it."""
        try:
            output_id = (self.root / "checked" / blob).read_text()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return Sha256(output_id) if is_sha256(output_id) else None

    def touch(self, kind: str, name: str) -> None:
        """Mark an entry as used now: its atime is what `cache gc` orders by
        (set explicitly, so relatime and noatime mounts do not matter)."""
        path = self.path(kind, name)
        with contextlib.suppress(FileNotFoundError):
            os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns))

    def verify_all(self) -> VerifyReport:
        """Re-hash every blob and check every record; quarantine what is corrupt, and
        remove staging files left by processes that died more than a day ago."""
        report = VerifyReport()
        if not self.exists():
            return report

        def out(path: Path, why: str) -> None:
            report.quarantined.append(Quarantined(path.parent.name, path.name, self.quarantine(path, why), why))

        for kind in ("cas", "sources"):
            for path in sorted((self.root / kind).iterdir()):
                report.checked += 1
                actual = file_sha256(path)
                if actual != path.name:
                    out(path, misnamed(actual, path.name))
        for path in sorted((self.root / "ac").iterdir()):
            report.checked += 1
            # A record whose blob is absent stays: it still says what the output is
            # (a dependency known from a remote); builds treat it as not cached.
            if _record(path.read_bytes(), path.name) is None:
                out(path, "not a build record for the key it is named by")
        now = time.time()
        for path in (self.root / "tmp").iterdir():
            if now - path.lstat().st_mtime > STALE_TMP_SECONDS:
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
                report.stale_tmp += 1
        return report

    def stats(self) -> dict[str, tuple[int, int]]:
        out = {}
        for kind in (*KINDS, "tmp", QUARANTINE, "failed"):  # failed: kept failed builds (build --keep-failed)
            files = [p for p in (self.root / kind).rglob("*") if p.is_file()] if (self.root / kind).is_dir() else []
            out[kind] = (len(files), sum(p.stat().st_size for p in files))
        return out


def _record(data: bytes, key: str) -> BuildRecord | None:
    """The build record in an ac/ entry's bytes; None when they are not one, or
    one for another key."""
    try:
        record = BuildRecord.from_json(data, f"ac/{key}", len(data))
    except NotARecord:
        return None
    return record if record.key == key else None
