"""Files being written into the store's tmp/: hashed as they are written, and a
writer thread that overlaps hashing and writing with receiving the next piece.
Committing them under their names is store.py's job."""

from __future__ import annotations

import hashlib
import queue
import threading
from pathlib import Path
from typing import BinaryIO

from ..core.digests import Sha256


class Staged:
    """A file being written in tmp/, hashed as it is written."""

    def __init__(self, path: Path, fh: BinaryIO) -> None:
        self.path, self.fh = path, fh
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.hasher.update(data)
        self.size += len(data)
        return self.fh.write(data)

    def reset(self) -> None:
        """Start again from nothing (a download that cannot resume)."""
        self.fh.seek(0)
        self.fh.truncate()
        self.hasher = hashlib.sha256()
        self.size = 0

    def hexdigest(self) -> Sha256:
        return Sha256(self.hasher.hexdigest())


class PipelinedWriter:
    """Hands pieces to a thread that hashes and writes them into a Staged file, so
    receiving the next piece overlaps with hashing and writing this one (socket
    reads, hashlib and file writes all release the GIL). `close` waits for the
    thread; afterwards the Staged file holds exactly what was handed over."""

    DEPTH = 8  # batches in flight
    BATCH = 1 << 20  # small pieces are joined first: fewer hand-overs between the threads

    def __init__(self, staged: Staged) -> None:
        self.staged = staged
        self.pieces: queue.Queue[bytes | bytearray | None] = queue.Queue(self.DEPTH)
        self.error: BaseException | None = None
        self._batch: list[bytes | bytearray] = []
        self._batched = 0
        self.total = staged.size  # bytes in the file once everything handed over is written
        self.thread = threading.Thread(target=self._run, name="staged-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (piece := self.pieces.get()) is not None:
            if self.error is None:
                try:
                    self.staged.write(piece)
                except BaseException as exc:  # reported to the producer by write/close
                    self.error = exc

    def write(self, data: bytes) -> int:
        """File-like: data is copied unless it is immutable bytes."""
        return self.take(data if type(data) is bytes else bytes(data))

    def take(self, piece: bytes | bytearray) -> int:
        """Like write, without a copy: the caller gives piece away and must not change it."""
        if self.error is not None:
            raise self.error
        self._batch.append(piece)
        self._batched += len(piece)
        self.total += len(piece)
        if self._batched >= self.BATCH:
            self._hand_over()
        return len(piece)

    def _hand_over(self) -> None:
        if self._batch:
            self.pieces.put(self._batch[0] if len(self._batch) == 1 else b"".join(self._batch))
            self._batch, self._batched = [], 0

    def close(self) -> None:
        self._hand_over()
        self.pieces.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error
