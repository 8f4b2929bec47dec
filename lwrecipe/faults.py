"""Fault injection for the test suite: with LWRECIPE_TEST_KILL_AT=<point>[:<n>]
the process kills itself with SIGKILL the n-th time (default: first) it
reaches that point — the same as `kill -9` at exactly that moment, without
timing races. Unset (always, outside tests), `point` does nothing.

Points: download, unpack, patch, build, pack, commit (a store file is complete
but not yet renamed), renamed (renamed, directory not yet fsynced), record,
push, lock.
"""

from __future__ import annotations

import os
import signal

ENV = "LWRECIPE_TEST_KILL_AT"
_target, _, _nth = os.environ.get(ENV, "").partition(":")
_wanted = int(_nth) if _nth.isdigit() else 1
_seen: dict[str, int] = {}


def point(name: str) -> None:
    if not _target or name != _target:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == _wanted:
        os.kill(os.getpid(), signal.SIGKILL)
