"""Starting a build's process: tried again, after a pause, while the kernel refuses
the fork for lack of memory or processes (a moment of memory pressure passes)."""

from __future__ import annotations

import errno
import subprocess
import time
from typing import Any

from ..core import faults

SPAWN_PAUSES = (0.25, 0.5, 1.0, 2.0)  # seconds before each try after the first


class SpawnRefused(OSError):
    """The kernel refused to start the build's process every time it was asked."""


def spawn(argv: list[str], **options: Any) -> subprocess.Popen[bytes]:
    """Popen, tried again while the kernel refuses the fork for lack of memory or
    processes (ENOMEM, EAGAIN): under memory pressure that passes in a moment."""
    pauses = iter(SPAWN_PAUSES)
    while True:
        try:
            faults.refuse("spawn")
            return subprocess.Popen(argv, **options)
        except OSError as exc:
            if exc.errno not in (errno.ENOMEM, errno.EAGAIN) or exc.filename is not None:
                raise  # not a refused fork: a missing program, a bad working directory
            pause = next(pauses, None)
            if pause is None:
                raise SpawnRefused(exc.errno, exc.strerror) from None
            time.sleep(pause)
