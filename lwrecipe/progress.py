"""Showing transfer progress: rich bars on a terminal, one plain line per event elsewhere."""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


class PlainReporter:
    """For CI logs and pipes: a line when a transfer starts and when it ends."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def _say(self, text: str) -> None:
        with self._lock:
            print(text, file=self.stream, flush=True)

    def begin(self, label: str, name: str, total: int | None) -> None:
        self._say(f"{label}: downloading {name} ({human_size(total)})")

    def advance(self, label: str, nbytes: int) -> None:
        pass

    def end(self, label: str, ok: bool, detail: str) -> None:
        self._say(f"{label}: {'done from' if ok else 'failed:'} {detail}")


class RichReporter:
    """One bar per file plus a total, for an interactive terminal."""

    def __init__(self) -> None:
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                   TransferSpeedColumn)

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), transient=False)
        self.total = self.progress.add_task("total", total=0)
        self.tasks: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def begin(self, label: str, name: str, total: int | None) -> None:
        with self._lock:
            if label in self.tasks:
                self.progress.reset(self.tasks[label], total=total)
            else:
                self.tasks[label] = self.progress.add_task(name, total=total)
                grand = self.progress.tasks[self.total].total or 0
                self.progress.update(self.total, total=grand + (total or 0))

    def advance(self, label: str, nbytes: int) -> None:
        self.progress.advance(self.tasks[label], nbytes)
        self.progress.advance(self.total, nbytes)

    def end(self, label: str, ok: bool, detail: str) -> None:
        if not ok:
            self.progress.console.print(f"{label}: failed: {detail}")


def make_reporter(quiet: bool = False) -> Any:
    from .fetch import NullReporter

    if quiet:
        return NullReporter()
    if sys.stderr.isatty():
        return RichReporter()
    return PlainReporter()
