"""Files lwrecipe keeps outside any store entry: how a small file is replaced whole,
how a rename is made durable, and where the per-user cache directory is.
Every stage uses these; they depend on nothing else in lwrecipe.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

TOOL_CACHE_ENV = "LWRECIPE_TOOL_CACHE"  # the host-tool memo's file; the user cache is its directory


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_text(path: Path, text: str | bytes, staging: Path | None = None) -> None:
    """Write a small file whole (text as UTF-8, or bytes): staged beside it (or in
    `staging`, same file system) and renamed over it, so no reader ever sees it
    half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=staging or path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode() if isinstance(text, str) else text)
        os.chmod(tmp, 0o644)  # readable like every other store entry, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def user_cache_dir() -> Path:
    """~/.cache/lwrecipe (XDG_CACHE_HOME honoured), or the directory of LWRECIPE_TOOL_CACHE."""
    if os.environ.get(TOOL_CACHE_ENV):
        return Path(os.environ[TOOL_CACHE_ENV]).parent
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lwrecipe"


def remove_tree(path: Path) -> None:
    """Remove a build directory, even parts a build made read-only. Only real
    directories are ever made writable again: a chmod never goes through a link
    the build left (chmod follows links, and an ordinary user's own key would
    otherwise become world-readable)."""

    def unlock(func: Any, p: str, _: Any) -> None:
        for d in (os.path.dirname(p), p):
            try:
                if stat.S_ISDIR(os.lstat(d).st_mode):
                    os.chmod(d, 0o755)
            except OSError:
                pass
        func(p)

    shutil.rmtree(path, onerror=unlock)
