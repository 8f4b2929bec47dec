"""The values a config file may leave out that code outside the schema needs
too: here so that using them never loads pydantic (schema.py does)."""

from __future__ import annotations

DEFAULT_TIMEOUT = 60.0  # seconds
DEFAULT_MIN_RATE = 10 << 10  # bytes per second: 600 KiB in a minute
