"""Showing transfer progress: rich bars on a terminal, one plain line per event elsewhere."""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

from ..core.errors import redact
from ..core.terminal import printable


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

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream  # None: whatever sys.stderr is when a line is written
        self._lock = threading.Lock()

    def _say(self, text: str) -> None:
        with self._lock:
            print(printable(redact(text)), file=self.stream or sys.stderr, flush=True)

    def begin(self, label: str, name: str, total: int | None) -> None:
        self._say(f"{label}: {name} ({human_size(total)})")

    def advance(self, label: str, nbytes: int) -> None:
        pass

    def end(self, label: str, ok: bool, detail: str) -> None:
        self._say(f"{label}: {'done via' if ok else 'failed:'} {detail}")


class RichReporter:
    """One bar per file plus a total, for an interactive terminal."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            transient=False,
        )
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
                self.tasks[label] = self.progress.add_task(printable(name), total=total)
                grand = self.progress.tasks[self.total].total or 0
                self.progress.update(self.total, total=grand + (total or 0))

    def advance(self, label: str, nbytes: int) -> None:
        self.progress.advance(self.tasks[label], nbytes)
        self.progress.advance(self.total, nbytes)

    def end(self, label: str, ok: bool, detail: str) -> None:
        if not ok:
            self.progress.console.print(printable(redact(f"{label}: failed: {detail}")), markup=False, highlight=False)


def make_reporter(quiet: bool = False) -> Any:
    from ..inputs.fetch import NullReporter

    if quiet:
        return NullReporter()
    if sys.stderr.isatty():
        return RichReporter()
    return PlainReporter()


class BuildDisplay:
    """One line per recipe (state and time in that state) while a build runs.

    On a terminal the lines are redrawn in place with rich; elsewhere each change
    of state is printed once. `log` prints a message above the live lines."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None, quiet: bool = False) -> None:
        import time

        stream = stream or sys.stderr  # the one of now, not of when this module was imported
        self._clock = time.monotonic
        self.stream, self.quiet = stream, quiet
        self.live_mode = (stream.isatty() if live is None else live) and not quiet
        self.states: dict[str, tuple[str, float]] = {}  # name -> (state, since)
        self.started: dict[str, float] = {}
        self._lock = threading.Lock()
        self._live: Any = None

    def __enter__(self) -> BuildDisplay:
        if self.live_mode:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(
                get_renderable=self._render, console=Console(file=self.stream), refresh_per_second=4, transient=False
            )
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()

    def event(self, name: str, state: str) -> None:
        with self._lock:
            now = self._clock()
            first = self.started.setdefault(name, now)
            self.states[name] = (state, now)
            if self.live_mode or self.quiet:
                return
            if state in ("built", "checked", "failed"):
                print(f"{name}: {state} after {now - first:.1f}s", file=self.stream, flush=True)
            elif state != "cached":
                print(f"{name}: {state}", file=self.stream, flush=True)

    def log(self, text: str) -> None:
        """`text` above the live lines, with no password and no control character in it."""
        if self.quiet:
            return
        text = printable(redact(text))
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        else:
            with self._lock:
                print(text, file=self.stream, flush=True)

    def _render(self) -> Any:
        from rich.table import Table

        table = Table.grid(padding=(0, 2))
        now = self._clock()
        with self._lock:
            for name, (state, since) in self.states.items():
                busy = state not in ("cached", "built", "checked", "failed", "skipped")
                elapsed = (now if busy else since) - self.started[name]
                table.add_row(name, state, f"{elapsed:.0f}s" if state != "cached" else "")
        return table


class DisplayReporter:
    """Transfer events of the downloads a build needs, as lines of a BuildDisplay."""

    def __init__(self, display: BuildDisplay) -> None:
        self.display = display

    def begin(self, label: str, name: str, total: int | None) -> None:
        self.display.log(f"{label}: {name} ({human_size(total)})")

    def advance(self, label: str, nbytes: int) -> None:
        pass

    def end(self, label: str, ok: bool, detail: str) -> None:
        self.display.log(f"{label}: {'done via' if ok else 'failed:'} {detail}")
