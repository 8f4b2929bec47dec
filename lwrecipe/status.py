"""What the local cache says about planned keys: `cached`, `build` or `not built`."""

from __future__ import annotations

from pathlib import Path

from .keys import Sha256
from .plan import Planned
from .store import Store


class StatusOracle:
    def __init__(self, cache_dir: Path) -> None:
        self.store = Store(cache_dir)
        self._exists = self.store.exists()

    def output_id(self, key: Sha256) -> Sha256 | None:
        if not self._exists:
            return None
        record = self.store.read_record(key)
        return Sha256(record["output_id"]) if record else None

    def status(self, item: Planned) -> str:
        if item.missing_tools:
            return "missing tool"
        if not self._exists:
            return "not built"
        if item.key and self.store.read_record(item.key) is not None:
            return "cached"
        return "build"
