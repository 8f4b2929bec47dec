"""The release lockfile (`lockfile.toml`, DESIGN.md "Lockfile").

Reading the keys and output ids a lockfile pins, for `cache gc --keep-locked`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from .errors import UsageError
from .keys import is_sha256

LOCKFILE = "lockfile.toml"


def pinned_ids(path: Path) -> set[str]:
    """Every build key and output id the lockfile at `path` names."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no lockfile (run `lwrecipe lock` first)") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    ids: set[str] = set()
    for entry in data.get("recipe", {}).values():
        if isinstance(entry, dict):
            ids.update(v for k in ("key", "output_id") if is_sha256(v := str(entry.get(k, ""))))
    return ids
