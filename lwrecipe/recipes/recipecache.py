"""Validated documents remembered by the exact bytes of the file they came from.

Most of what a short command such as a no-op build spends on its recipes is
building pydantic's validators for the recipe models. A file whose bytes the
same validating code has accepted before is rebuilt from the fields it
validated to, without validation: an entry is named by the sha256 of the
file's bytes and of a tag the caller gives for its code (recipe.py's source and
pydantic's version), so any change to either misses. This module stores and
prunes the fields; what they mean belongs to recipe.py, which alone puts only
documents that validated. A missing, unreadable or malformed entry only costs
validating again, and the directory can be deleted at any time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..files import replace_text, user_cache_dir

LIMIT = 20_000  # entries kept; the least recently written go first (each is about 1 KB)
SLACK = 0.1  # the directory may grow this far past LIMIT between two prunes
_counted: int | None = None  # entries as this process last counted them, plus those it wrote since


def cache_dir() -> Path:
    """Beside the host-tool memo: ~/.cache/lwrecipe/recipes (LWRECIPE_TOOL_CACHE moves both)."""
    return user_cache_dir() / "recipes"


def _entry(data: bytes, tag: str) -> Path:
    return cache_dir() / (hashlib.sha256(tag.encode() + b"\0" + data).hexdigest() + ".json")


def get(data: bytes, tag: str) -> Any:
    """The fields stored for these bytes under this code tag, or None."""
    try:
        return json.loads(_entry(data, tag).read_bytes())
    except (OSError, ValueError):
        return None


def put(data: bytes, tag: str, fields: Any) -> None:
    global _counted
    path = _entry(data, tag)
    try:
        replace_text(path, json.dumps(fields))
        _counted = _counted + 1 if _counted is not None else sum(1 for _ in os.scandir(path.parent))
        if _counted > LIMIT * (1 + SLACK):
            _counted = _prune(path.parent)
    except OSError:
        pass  # a read-only home only costs speed


def _prune(directory: Path) -> int:
    """Keeps the newest LIMIT entries; returns how many are left. The directory is
    counted once per process and listed again only each LIMIT * SLACK writes, so
    validating a graph of many new recipes stays linear."""
    entries = list(os.scandir(directory))
    if len(entries) > LIMIT:
        entries.sort(key=lambda e: e.stat().st_mtime_ns)
        for entry in entries[:len(entries) - LIMIT]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
    return min(len(entries), LIMIT)
