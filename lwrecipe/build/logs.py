"""Where a recipe's build logs are and how to read them: the log of its last build
(in its record), of a failed build (kept in logs/), and of a running build as it
grows. Showing them on a terminal is the caller's job."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..core.errors import UsageError
from ..core.record import BuildRecord
from ..store.store import Store
from .builder import kept_failure

CHUNK = 1 << 20


@dataclass(frozen=True)
class FailedLog:
    """The log a failed build left (removed by the next build that works), when it
    was written, and the build directory `--keep-failed` kept, if any."""

    path: Path
    written: float
    kept: Path | None

    def chunks(self) -> Iterator[bytes]:
        with self.path.open("rb") as fh:
            yield from iter(lambda: fh.read(CHUNK), b"")


def failed_log(store: Store, name: str) -> FailedLog | None:
    failure = store.root / "logs" / f"{name}.log"
    if not failure.is_file():
        return None
    kept = kept_failure(store, name)
    return FailedLog(failure, failure.stat().st_mtime, kept if kept.is_dir() else None)


def last_record(store: Store, name: str) -> BuildRecord | None:
    """The record of the last build or use of `name` here (`why` keeps the key)."""
    key = store.last(name) if store.exists() else None
    return store.read_record(key) if key is not None else None


def recorded_log(store: Store, record: BuildRecord) -> Iterator[bytes]:
    """The log a record names, decompressed, piece by piece."""
    import zstandard

    with (
        store.open_blob("cas", record.log) as blob,
        zstandard.ZstdDecompressor().stream_reader(blob, read_across_frames=True) as reader,
    ):
        yield from iter(lambda: reader.read(CHUNK), b"")


def running_log(store: Store, name: str) -> Path:
    """The log of the newest running build of `name`; UsageError when none runs."""
    running = (
        sorted((store.root / "tmp").glob(f"build-{name}-*/build.log"), key=lambda p: p.stat().st_mtime)
        if store.exists()
        else []
    )
    if not running:
        raise UsageError(f"{name}: no build of it is running in {store.root}")
    return running[-1]


def follow(log: Path) -> Iterator[bytes]:
    """A running build's log as it grows, until that build's directory is gone."""
    try:
        # held open: what is written before the build's directory goes is still read
        fh = os.fdopen(os.open(log, os.O_RDONLY | os.O_NOFOLLOW), "rb")
    except FileNotFoundError:
        return
    with fh:
        yield from _grown(fh, log)


def _grown(fh: BinaryIO, log: Path) -> Iterator[bytes]:
    """What is written to `fh` until the build's directory (`log`'s) is gone."""
    while True:
        gone = not log.parent.exists()
        chunk = fh.read(CHUNK)
        if chunk:
            yield chunk
        elif gone:
            return
        else:
            time.sleep(0.2)
