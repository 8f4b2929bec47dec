"""Fault injection for the test suite: with LWRECIPE_TEST_KILL_AT=<point>[:<n>]
the process kills itself with SIGKILL the n-th time (default: first) it
reaches that point — the same as `kill -9` at exactly that moment, without
timing races. Unset (always, outside tests), `point` does nothing.

Points: download, unpack, patch, build, pack, commit (a store file is complete
but not yet renamed), renamed (renamed, directory not yet fsynced), record,
push, push-record (a push's blobs are on the remote, its record not yet), lock.

With LWRECIPE_TEST_REFUSE_AT=<point>:<n>:<errno name> the first n calls of
`refuse(point)` raise that OSError, as the kernel would under a transient
shortage (points: spawn, the fork of a build's process).
"""

from __future__ import annotations

import errno
import os
import signal

ENV = "LWRECIPE_TEST_KILL_AT"
_target, _, _nth = os.environ.get(ENV, "").partition(":")
_wanted = int(_nth) if _nth.isdigit() else 1
_seen: dict[str, int] = {}


PAUSE_ENV = "LWRECIPE_TEST_PAUSE_AT"  # <point>:<gate file>
_pause_at, _, _gate = os.environ.get(PAUSE_ENV, "").partition(":")


REFUSE_ENV = "LWRECIPE_TEST_REFUSE_AT"
_refuse_at, _, _refuse_rest = os.environ.get(REFUSE_ENV, "").partition(":")
_refuse_n, _, _refuse_errno = _refuse_rest.partition(":")
_refused: dict[str, int] = {}


def refuse(name: str) -> None:
    if not _refuse_at or name != _refuse_at:
        return
    _refused[name] = _refused.get(name, 0) + 1
    if _refused[name] <= int(_refuse_n or 1):
        code = getattr(errno, _refuse_errno or "ENOMEM")
        raise OSError(code, os.strerror(code))


def point(name: str) -> None:
    if _pause_at and name == _pause_at:
        _pause()
    if not _target or name != _target:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == _wanted:
        os.kill(os.getpid(), signal.SIGKILL)


def _pause() -> None:
    """With LWRECIPE_TEST_PAUSE_AT=<point>:<gate>, wait at the point while the gate
    file exists, having created <gate>.reached: a test holds the process exactly
    there (the push-record point, between a push's blob checks and its record) to
    run something else in between."""
    import time

    open(f"{_gate}.reached", "w").close()
    while os.path.exists(_gate):
        time.sleep(0.02)
