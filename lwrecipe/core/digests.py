"""Digests and the one JSON form that is hashed or signed: pure functions over
plain values, shared by every layer (a store key, a recipe pin, a signed record)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, NewType

Sha256 = NewType("Sha256", str)
"""A sha256 digest as 64 lowercase hex characters."""

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_GIT_REV_RE = re.compile(r"[0-9a-f]{40}")


def is_sha256(value: str) -> bool:
    return bool(_SHA256_RE.fullmatch(value))


def is_git_rev(value: str) -> bool:
    return bool(_GIT_REV_RE.fullmatch(value))


def sha256_bytes(data: bytes) -> Sha256:
    return Sha256(hashlib.sha256(data).hexdigest())


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the only JSON form that is hashed or signed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def short(digest: str, n: int = 12) -> str:
    return digest[:n]
