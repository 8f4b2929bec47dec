"""Deadlines for transfers (Bazel's --remote_timeout, curl's --speed-limit): how
long one object may take, and the slowest pace it may keep.

A transfer (one HTTP exchange, one gRPC stream) is abandoned when bytes move
but fewer than `min_rate` × `timeout` of them in the last `timeout` seconds of
one direction (sending a body, then receiving the answer: the window starts
again when the direction turns, so a server that thinks before it answers is
judged by the read timeout); and, when its size is known before it starts,
when it is not done within max(timeout, size / min_rate) seconds. Silence is a
timeout (retried), not slowness, except where no read has a timeout of its own
(a gRPC stream: `idle_fails`). A server that sends one byte every few seconds
is dropped after `timeout` seconds, whatever it claims the object's size is.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..core.config.defaults import DEFAULT_MIN_RATE, DEFAULT_TIMEOUT


class Abandoned(Exception):
    """A transfer fell below its pace or passed its deadline; the text says which."""


def rate_text(rate: float) -> str:
    """1000 B/s, 10 KiB/s, 1.5 MiB/s."""
    for unit, scale in (("MiB/s", 1 << 20), ("KiB/s", 1 << 10)):
        if rate >= scale:
            return f"{rate / scale:g} {unit}"
    return f"{rate:g} B/s"


@dataclass(frozen=True)
class Limits:
    """The pace a transfer must keep. min_rate 0 keeps only per-read timeouts."""

    timeout: float = DEFAULT_TIMEOUT  # seconds: the window of the rate check, and the least a deadline gives
    min_rate: float = DEFAULT_MIN_RATE  # bytes per second

    def deadline(self, size: int | None) -> float | None:
        """Seconds an object of `size` bytes may take; None when its size is not known."""
        if size is None or self.min_rate <= 0:
            return None
        return max(self.timeout, size / self.min_rate)


@dataclass
class Pace:
    """One transfer's progress against its Limits; shared by the thread moving its
    bytes and a watchdog that may cancel it."""

    limits: Limits
    size: int | None = None  # the size expected before the transfer started, if known
    idle_fails: bool = False  # nothing moving for `timeout` seconds is slow too
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)
    _phase: tuple[str, float] = field(init=False)  # the direction bytes move in, since when
    _recent: deque[tuple[float, int]] = field(init=False, default_factory=deque)  # (when, bytes) in the window
    _in_window: int = field(init=False, default=0)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.started = self.clock()
        self._phase = ("", self.started)

    def moved(self, nbytes: int, direction: str = "in") -> None:
        """nbytes went `direction` ("in" or "out"); a turn starts the window again."""
        with self._lock:
            now = self.clock()
            if direction != self._phase[0]:
                self._phase = (direction, now)
                self._recent.clear()
                self._in_window = 0
            if nbytes > 0:
                self._recent.append((now, nbytes))
                self._in_window += nbytes

    def _trim(self, now: float) -> None:
        while self._recent and self._recent[0][0] <= now - self.limits.timeout:
            self._in_window -= self._recent.popleft()[1]

    def violation(self) -> str | None:
        """Why the transfer is to be abandoned now, or None."""
        now = self.clock()
        deadline = self.limits.deadline(self.size)
        if deadline is not None and now - self.started > deadline:  # on average, slower than min_rate
            return f"slower than {rate_text(self.limits.min_rate)} for {deadline:g} s; abandoned"
        if self.limits.min_rate <= 0:
            return None
        with self._lock:
            if now - self._phase[1] < self.limits.timeout:
                return None
            self._trim(now)
            slow = (
                self.idle_fails or self._in_window > 0
            ) and self._in_window < self.limits.min_rate * self.limits.timeout
        if slow:
            return f"slower than {rate_text(self.limits.min_rate)} for {self.limits.timeout:g} s; abandoned"
        return None

    def check(self) -> None:
        reason = self.violation()
        if reason is not None:
            raise Abandoned(reason)

    def wait_limit(self, timeout: float | None) -> float:
        """How long one blocking read or write may wait: no longer than the window
        (nothing arriving for that long fails the rate check) nor past the deadline."""
        limit = self.limits.timeout if timeout is None else min(timeout, self.limits.timeout)
        deadline = self.limits.deadline(self.size)
        if deadline is not None:
            limit = min(limit, self.started + deadline - self.clock())
        return max(limit, 0.05)


class Watchdog:
    """Calls `cancel` once the pace is broken, from a thread of its own: for a call
    that blocks where the pace cannot be checked between reads (a gRPC stream).
    `reason` says why it cancelled, None while it has not."""

    def __init__(self, pace: Pace, cancel: Callable[[], object], tick: float = 0.2) -> None:
        self.pace, self.cancel, self.tick = pace, cancel, tick
        self.reason: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lwrecipe-watchdog", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            reason = self.pace.violation()
            if reason is not None:
                self.reason = reason
                self.cancel()
                return

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
