"""The shape of the names index a remote serves (names/<recipe>), checked before
anything uses it. A remote and everything in it is untrusted (docs/security.md);
a build record's shape is core/record.py's.
"""

from __future__ import annotations

from typing import Any


def names_entries(document: Any) -> list[dict[str, Any]]:
    """The entries of a names/<recipe> index: `{"keys": [{"key": …}, …]}`; anything
    else in it is ignored, as the index is advisory."""
    keys = document.get("keys") if isinstance(document, dict) else None
    return [e for e in keys if isinstance(e, dict) and isinstance(e.get("key"), str)] if isinstance(keys, list) else []
