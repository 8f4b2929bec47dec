"""Build outputs in the store: packing a tree into a zstd blob, restoring it.

One pass writes the canonical archive, hashes it (the output id), compresses it
with zstd and hashes the compressed bytes (the blob's name). Restoring checks
the blob's hash and the output id while it streams.
"""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from ..core.digests import Sha256, is_sha256
from ..core.errors import IntegrityError, UnsafeArchive
from .archive import HashingWriter, extract_canonical, write_tree
from .staging import PipelinedWriter
from .store import Store, misnamed

ZSTD_LEVEL = 3
READ_SIZE = 1 << 20


@dataclass(frozen=True)
class Packed:
    output_id: Sha256  # sha256 of the uncompressed canonical archive
    blob: Sha256  # sha256 of the zstd blob in cas/
    size: int  # uncompressed bytes
    blob_size: int
    files: int


def pack(store: Store, tree: Path, mtime: int) -> Packed:
    """Archive, hash and compress `tree` in one pass. This thread reads files and
    hashes the archive, zstd compresses on its own threads, and the compressed
    bytes are hashed and written on another (PipelinedWriter)."""
    with store.staging() as staged:
        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1)
        blob_writer = PipelinedWriter(staged)
        try:
            with compressor.stream_writer(
                blob_writer,  # type: ignore[arg-type]  # zstandard calls write() only; its stub asks for IO[bytes]
                closefd=False,
                write_size=1 << 20,
            ) as zwriter:
                archive = HashingWriter(zwriter)
                entries = write_tree(tree, archive, mtime)
        finally:
            blob_writer.close()
        blob_size = staged.size
        blob = staged.hexdigest()
        store.commit(staged, "cas")
    output_id = archive.hexdigest()
    store.mark_checked(blob, output_id)
    return Packed(output_id, blob, archive.size, blob_size, len(entries))


def put_log(store: Store, log: BinaryIO) -> Sha256:
    """Store a build's log zstd-compressed, streamed from `log` (never held whole)."""
    with store.staging() as staged:
        zstandard.ZstdCompressor(level=ZSTD_LEVEL).copy_stream(
            log,
            staged,  # type: ignore[arg-type]  # zstandard calls write() only; its stub asks for IO[bytes]
            read_size=READ_SIZE,
            write_size=READ_SIZE,
        )
        store.commit(staged, "cas")
        return staged.hexdigest()


class _Tee:
    """The blob as zstd reads it, with what was read kept for hashing elsewhere."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.taken: list[bytes] = []

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.taken.append(data)
        return data


class _Unpacker(threading.Thread):
    """Reads and decompresses a blob on its own thread (zstd releases the GIL),
    handing 1 MiB pieces of the archive to the extracting thread together with
    the compressed bytes they came from. The extracting thread hashes both: it
    waits on this one otherwise, as decompressing is the slower half."""

    def __init__(self, path: Path, check_archive: bool = True) -> None:
        super().__init__(daemon=True)
        self.path, self.check_archive = path, check_archive
        self.blob_hash, self.archive_hash = hashlib.sha256(), hashlib.sha256()
        self.pieces: queue.Queue[tuple[list[bytes], bytes] | BaseException] = queue.Queue(maxsize=8)
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            with self.path.open("rb") as fh:
                tee = _Tee(fh)
                with zstandard.ZstdDecompressor().stream_reader(
                    tee,  # type: ignore[arg-type]  # zstandard calls read() only; its stub asks for IO[bytes]
                    read_size=READ_SIZE,
                    read_across_frames=True,
                    closefd=False,
                ) as reader:
                    while not self.stopped.is_set():
                        data = reader.read(READ_SIZE)
                        taken, tee.taken = tee.taken, []
                        self._put((taken, data))
                        if not data:
                            break
        except (zstandard.ZstdError, OSError) as exc:
            self._put(exc)

    def _put(self, item: tuple[list[bytes], bytes] | BaseException) -> None:
        while not self.stopped.is_set():
            try:
                self.pieces.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, n: int = -1) -> bytes:
        """The next piece of the archive."""
        item = self.pieces.get()
        if isinstance(item, BaseException):
            raise item
        taken, data = item
        for raw in taken:
            self.blob_hash.update(raw)
        if self.check_archive:
            self.archive_hash.update(data)
        return data

    def drain(self) -> None:
        while self.read():
            pass

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def restore(store: Store, blob: Sha256, output_id: Sha256, dest: Path) -> None:
    """Unpack the blob into `dest` (which must not exist). On any mismatch `dest` is
    removed, the blob is quarantined, and IntegrityError is raised.

    The blob is always checked against its name. The archive inside is hashed
    too unless the store already holds the fact that this blob's archive is
    `output_id` (written by pack, and by the first restore that hashed it): a
    record that names another output id, one pulled from a remote, is checked."""
    path = store.path("cas", blob)
    if not path.is_file():
        raise IntegrityError(f"cas/{blob}: missing from the cache")
    check_archive = store.checked(blob) != output_id
    dest.mkdir(parents=True)
    unpacker = _Unpacker(path, check_archive)
    unpacker.start()
    try:
        extract_canonical(unpacker.read, dest)
        unpacker.drain()
    except (UnsafeArchive, zstandard.ZstdError, OSError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        moved = store.quarantine(path, f"unreadable as an output ({exc})")
        raise IntegrityError(f"cas/{blob}: unreadable ({exc}); moved to {moved}") from None
    finally:
        unpacker.stop()
    why = _mismatch(unpacker, blob, output_id, check_archive)
    if why is not None:
        shutil.rmtree(dest, ignore_errors=True)
        moved = store.quarantine(path, why)
        raise IntegrityError(f"cas/{blob}: {why}; moved to {moved}")
    if check_archive:
        store.mark_checked(blob, output_id)


def recheck_facts(store: Store) -> tuple[int, list[str]]:
    """For `cache verify`: decompress every blob that has a `checked/` fact and hash
    its archive. A fact that is wrong or unreadable is removed and reported (the
    blob is judged by its own name elsewhere; a wrong fact would only make a
    restore skip the archive hash); one whose blob is gone is removed quietly.
    Returns how many facts were checked and which were removed."""
    directory = store.root / "checked"
    removed: list[str] = []
    checked = 0
    for fact in sorted(directory.iterdir()) if directory.is_dir() else []:
        said = store.checked(Sha256(fact.name)) if is_sha256(fact.name) else None
        if said is not None and not store.path("cas", fact.name).is_file():
            fact.unlink(missing_ok=True)
            continue
        checked += 1
        if said is None or _archive_id(store.path("cas", fact.name)) != said:
            fact.unlink(missing_ok=True)
            removed.append(f"checked/{fact.name}")
    return checked, removed


def _mismatch(unpacker: _Unpacker, blob: str, output_id: str, check_archive: bool = True) -> str | None:
    """Why an unpacked blob is not what its name and its record say, or None."""
    actual_blob, actual_id = unpacker.blob_hash.hexdigest(), unpacker.archive_hash.hexdigest()
    if actual_blob != blob:
        return misnamed(actual_blob, blob)
    if check_archive and actual_id != output_id:
        return f"holds the output id {actual_id}, not the {output_id} its record names"
    return None


def output_finding(store: Store, blob: Sha256, output_id: Sha256) -> str | None:
    """For an audit: re-hash an output blob and the archive it decompresses to.
    None when both are what they are named; otherwise why not (the blob is then
    quarantined and the reason says where it went)."""
    path = store.path("cas", blob)
    unpacker = _Unpacker(path)
    unpacker.start()
    try:
        unpacker.drain()
        why = None
    except (zstandard.ZstdError, OSError) as exc:
        why = f"unreadable as an output ({exc})"
    finally:
        unpacker.stop()
    if why is None:
        why = _mismatch(unpacker, blob, output_id)
    if why is None:
        return None
    moved = store.quarantine(path, why)
    return f"{why}; moved to {moved}"


def _archive_id(path: Path) -> str | None:
    unpacker = _Unpacker(path)
    unpacker.start()
    try:
        unpacker.drain()
    except (zstandard.ZstdError, OSError):
        return None
    finally:
        unpacker.stop()
    return unpacker.archive_hash.hexdigest()


SHARED = "envs"  # beside cas/ and ac/: outputs unpacked once and shared read-only (build environments)
MERKLE = "merkle"  # merkle/<output id>: an unpacked environment's REAPI Merkle tree (build --executor)


def shared_tree(store: Store, output_id: str) -> Path:
    return store.root / SHARED / output_id


def publish_shared(restored: Path, shared: Path) -> None:
    """Move a freshly restored tree to its shared place; a tree another process put
    there first is as good (same output id), and ours is dropped with its staging."""
    shared.parent.mkdir(exist_ok=True)
    try:
        os.rename(restored, shared)
    except OSError:
        if not shared.is_dir():
            raise
