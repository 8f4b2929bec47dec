"""Watching a running build: its output copied from a pipe to its log on disk
(never held whole), handed line by line to `build -v`, and its limits — time,
silence, log size, memory, processes — enforced by killing its whole process
tree. Also reading a log back without holding it: its tail from the file's end.

Nix's names: --timeout, --max-silent-time, --max-log-size; a build past one
ends with the limit named, never with a partial output stored.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import BinaryIO

from .cgroups import Cgroup

CHUNK = 1 << 20
MAX_LINE = 16 << 10  # a longer line is handed on in pieces of this many bytes
TAIL_BYTES = 64 << 10
TICK = 0.25  # seconds between looks at the clock and the cgroup's counters


@dataclass(frozen=True)
class Limit:
    """A limit's value and where it was set (`--timeout`, `timeout in <file>`)."""

    value: float
    origin: str


@dataclass(frozen=True)
class Limits:
    timeout: Limit | None = None  # seconds
    max_silent_time: Limit | None = None  # seconds
    max_log_size: Limit | None = None  # bytes
    max_memory: Limit | None = None  # bytes (a cgroup)
    max_procs: Limit | None = None  # processes (a cgroup)

    def with_timeout(self, seconds: float | None, origin: str) -> Limits:
        """These limits with a recipe's own timeout: it can lower the user's, never raise it."""
        if seconds is None or (self.timeout is not None and self.timeout.value <= seconds):
            return self
        return replace(self, timeout=Limit(seconds, origin))

    @property
    def needs_cgroup(self) -> bool:
        return self.max_memory is not None or self.max_procs is not None


def size_text(n: float) -> str:
    """1 MiB, 64 MiB, 1.5 GiB, 900 bytes."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n:.0f} bytes"


def seconds_text(s: float) -> str:
    return f"{s:g} s"


class Lines:
    """Bytes in, lines out (without their newline); a line longer than MAX_LINE
    comes out in pieces, so no line is ever held whole."""

    def __init__(self, say: Callable[[bytes], None]) -> None:
        self.say, self.pending = say, b""

    def feed(self, data: bytes) -> None:
        data = self.pending + data
        start = 0
        while True:
            end = data.find(b"\n", start, start + MAX_LINE + 1)
            if end >= 0:
                self.say(data[start:end])
                start = end + 1
            elif len(data) - start > MAX_LINE:
                self.say(data[start : start + MAX_LINE])
                start += MAX_LINE
            else:
                break
        self.pending = data[start:]

    def close(self) -> None:
        if self.pending:
            self.say(self.pending)
            self.pending = b""


def watch(
    proc: subprocess.Popen[bytes],
    output: int,
    log: BinaryIO,
    limits: Limits,
    cgroup: Cgroup | None,
    kill: Callable[[], None],
    on_line: Callable[[bytes], None] | None = None,
) -> str | None:
    """Copy the build's output (the pipe `output`) to `log` until the build ends,
    killing it at a limit. Returns what stopped it (`timed out after 5 s
    (--timeout)`), or None when it ended by itself. `kill` ends its process tree."""
    lines = Lines(on_line) if on_line is not None else None
    started = last_output = time.monotonic()
    written = 0
    cap = int(limits.max_log_size.value) if limits.max_log_size else None
    cap_origin = limits.max_log_size.origin if limits.max_log_size else ""
    poller = select.poll()
    poller.register(output, select.POLLIN)
    open_pipe = True
    exceeded: str | None = None
    while exceeded is None:
        now = time.monotonic()
        waits = [TICK if cgroup is not None else 1.0]
        if limits.timeout:
            waits.append(started + limits.timeout.value - now)
        if limits.max_silent_time:
            waits.append(last_output + limits.max_silent_time.value - now)
        wait = max(0.0, min(waits))
        if not open_pipe:
            time.sleep(wait)
        elif poller.poll(wait * 1000):
            data = os.read(output, CHUNK)
            if not data:
                poller.unregister(output)
                open_pipe = False
            else:
                last_output = time.monotonic()
                if cap is not None and written + len(data) > cap:
                    data = data[: cap - written]
                    exceeded = f"log exceeded {size_text(cap)} ({cap_origin})"
                log.write(data)
                written += len(data)
                if lines is not None:
                    lines.feed(data)
        now = time.monotonic()
        if exceeded is not None:
            break
        if limits.timeout and now - started >= limits.timeout.value:
            exceeded = f"timed out after {seconds_text(limits.timeout.value)} ({limits.timeout.origin})"
        elif limits.max_silent_time and now - last_output >= limits.max_silent_time.value:
            exceeded = (
                f"produced no output for {seconds_text(limits.max_silent_time.value)} ({limits.max_silent_time.origin})"
            )
        elif cgroup is not None and limits.max_memory and cgroup.oom_killed():
            exceeded = f"ran out of memory: more than {size_text(limits.max_memory.value)} ({limits.max_memory.origin})"
        elif cgroup is not None and limits.max_procs and cgroup.procs_refused():
            exceeded = f"reached {limits.max_procs.value:.0f} processes ({limits.max_procs.origin})"
        elif proc.poll() is not None:
            break
    kill()
    if exceeded is None and cgroup is not None and limits.max_memory and cgroup.oom_killed():
        exceeded = f"ran out of memory: more than {size_text(limits.max_memory.value)} ({limits.max_memory.origin})"
    if exceeded is None and open_pipe:  # what the build wrote before it ended, up to where its writers died
        _drain(output, log, lines, cap - written if cap is not None else None)
    log.flush()
    if lines is not None:
        lines.close()
    return exceeded


def _drain(output: int, log: BinaryIO, lines: Lines | None, room: int | None) -> None:
    os.set_blocking(output, False)
    while room is None or room > 0:
        try:
            data = os.read(output, CHUNK if room is None else min(CHUNK, room))
        except BlockingIOError:  # a writer that escaped the kill still holds the pipe
            return
        if not data:
            return
        log.write(data)
        if lines is not None:
            lines.feed(data)
        if room is not None:
            room -= len(data)


def tail(fh: BinaryIO, lines: int) -> str:
    """The last `lines` lines of a log, read from its end (at most TAIL_BYTES)."""
    size = os.fstat(fh.fileno()).st_size
    fh.seek(max(0, size - TAIL_BYTES))
    text = fh.read(TAIL_BYTES).decode(errors="replace").removesuffix("\n").split("\n")
    if size > TAIL_BYTES and len(text) > 1:
        text = text[1:]  # most likely a piece of a line
    # a line too long is shown by its end: what a build printed last is what tells why it failed
    return (
        "\n".join(line if len(line) <= MAX_LINE else "…" + line[-MAX_LINE:] for line in text[-lines:]) if size else ""
    )
