"""Sizes as people write them (`500M`, `10G`, `1.5GiB`, `123`): for the
command line's flags and the config files' limits alike."""

from __future__ import annotations

import re

from .errors import UsageError

SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """`500M`, `10G`, `1.5GiB`, `123` (bytes); binary units."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if m is None:
        raise UsageError(f"--max-size: {text!r} is not a size such as 500M or 10G")
    return int(float(m.group(1)) * SIZE_UNITS[m.group(2).upper()])
