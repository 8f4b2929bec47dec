"""Helpers shared by the benchmarks: timing and the ratio table."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best(fn: Callable[[], object], runs: int = 3, before: Callable[[], object] | None = None) -> float:
    """The fastest of `runs` timings; `before` runs untimed ahead of each one."""
    times = []
    for _ in range(runs):
        if before is not None:
            before()
        times.append(timed(fn))
    return min(times)


# Best of this many, taken in turn with the reference. This VM's timings of
# anything that writes hundreds of MiB vary by up to 2x from run to run (freed
# guest memory goes back to the host, and touching it again is slow), so one
# lucky or unlucky run must not decide a ratio.
RUNS = int(os.environ.get("BENCH_RUNS", "5"))


SETTLE_MIB = int(os.environ.get("BENCH_SETTLE_MIB", "1536"))


def settle() -> None:
    """Writes and deletes BENCH_SETTLE_MIB of zeros in BENCH_TMP (or /dev/shm), so
    that each timed run finds as much free memory that the guest touched a moment
    ago. This VM hands memory freed for about two seconds back to its host, and a
    run that writes into such memory was up to 2x slower; which run got it was
    chance (docs/performance.md). 0 turns it off."""
    if SETTLE_MIB <= 0:
        return
    zeros = bytes(16 << 20)
    fd, path = tempfile.mkstemp(dir=os.environ.get("BENCH_TMP", "/dev/shm"), prefix="settle-")
    try:
        for _ in range(SETTLE_MIB // 16):
            os.write(fd, zeros)
    finally:
        os.close(fd)
        os.unlink(path)


def paired(
    ours: Callable[[], object], ref: Callable[[], object], runs: int = RUNS, before: Callable[[], object] | None = None
) -> tuple[float, float]:
    """The fastest of `runs` timings of each, taken in turn (ref, ours, ref, ours, ...)
    so that a machine whose speed drifts during the run slows both alike; memory
    is settled before each."""
    ours_times, ref_times = [], []
    for _ in range(runs):
        for fn, times in ((ref, ref_times), (ours, ours_times)):
            if before is not None:
                before()
            settle()
            times.append(timed(fn))
    return min(ours_times), min(ref_times)


def row(measure: str, reference: str, ours: float, ref: float | None, target: str, time_ratio: bool) -> dict:
    """A result row; `ratio` is ours/ref for time targets, ref/ours for throughput ones."""
    ratio = None if ref is None else (ours / ref if time_ratio else ref / ours)
    return {"measure": measure, "reference": reference, "ours_s": ours, "ref_s": ref, "ratio": ratio, "target": target}


def report(rows: list[dict]) -> None:
    print(f"{'measure':<34} {'reference':<26} {'ours':>10} {'ref':>8} {'ratio':>7}  target")
    for r in rows:
        unit = r.get("unit", "s")
        ours = f"{r['ours_s']:>8.2f}{'s' if unit == 's' else ''}" + (f" {unit}" if unit != "s" else "")
        ref = (
            f"{r['ref_s']:>7.2f}{'s' if unit == 's' else ''}" + (f" {unit}" if unit != "s" else "")
            if r["ref_s"] is not None
            else f"{'-':>8}"
        )
        ratio = f"{r['ratio']:>6.2f}x" if r["ratio"] is not None else f"{'-':>7}"
        print(f"{r['measure']:<34} {r['reference']:<26} {ours:>10} {ref} {ratio}  {r['target']}")


def random_blob(path: Path, size: int) -> str:
    """Write `size` random bytes (whole 16 MiB pieces) to path; their sha256."""
    import hashlib

    digest = hashlib.sha256()
    with path.open("wb") as fh:
        for _ in range(size // (16 << 20)):
            chunk = os.urandom(16 << 20)
            digest.update(chunk)
            fh.write(chunk)
    return digest.hexdigest()
