"""Build outputs in the store: packing a tree into a zstd blob, restoring it.

One pass writes the canonical archive, hashes it (the output id), compresses it
with zstd and hashes the compressed bytes (the blob's name). Restoring checks
the blob's hash and the output id while it streams.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from .archive import HashingWriter, write_tree
from .errors import IntegrityError
from .keys import Sha256
from .store import Store

ZSTD_LEVEL = 3


@dataclass(frozen=True)
class Packed:
    output_id: Sha256  # sha256 of the uncompressed canonical archive
    blob: Sha256  # sha256 of the zstd blob in cas/
    size: int  # uncompressed bytes
    blob_size: int
    files: int


def pack(store: Store, tree: Path, mtime: int) -> Packed:
    with store.staging() as staged:
        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1)
        with compressor.stream_writer(staged, closefd=False, write_size=1 << 20) as zwriter:  # type: ignore[arg-type]
            archive = HashingWriter(zwriter)  # type: ignore[arg-type]
            entries = write_tree(tree, archive, mtime)  # type: ignore[arg-type]
        blob_size = staged.size
        blob = staged.hexdigest()
        store.commit(staged, "cas")
    return Packed(archive.hexdigest(), blob, archive.size, blob_size, len(entries))


def put_log(store: Store, log: Path) -> Sha256:
    data = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(log.read_bytes())
    store.put_bytes("cas", data)
    return Sha256(hashlib.sha256(data).hexdigest())


class _HashingReader:
    """Reads from `inner` and hashes everything read."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        self.hash.update(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def restore(store: Store, blob: Sha256, output_id: Sha256, dest: Path) -> None:
    """Unpack the blob into `dest` (which must not exist). On any mismatch `dest` is
    removed, the blob is deleted from the store, and IntegrityError is raised."""
    path = store.path("cas", blob)
    if not path.is_file():
        raise IntegrityError(f"cas/{blob}: missing from the cache")
    dest.mkdir(parents=True)
    fh = path.open("rb")
    raw = _HashingReader(fh)
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)  # type: ignore[arg-type]
        tar_stream = _HashingReader(reader)
        with tarfile.open(fileobj=tar_stream, mode="r|") as tar:  # type: ignore[call-overload]
            tar.extractall(dest, filter="tar")
        tar_stream.drain()
        raw.drain()
    except (tarfile.TarError, zstandard.ZstdError, OSError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        path.unlink(missing_ok=True)
        raise IntegrityError(f"cas/{blob}: unreadable ({exc}); deleted") from None
    finally:
        fh.close()
    if raw.hash.hexdigest() != blob or tar_stream.hash.hexdigest() != output_id:
        shutil.rmtree(dest, ignore_errors=True)
        path.unlink(missing_ok=True)
        raise IntegrityError(f"cas/{blob}: contents do not match (blob or output id); deleted")
