"""What the caches say about planned keys: `cached`, `remote`, `build` or `not built`.

Local records answer first; when remotes are given, a key the local cache lacks
is looked up there (records are checked as for substitution), so `plan` can
also learn the output ids that later keys depend on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.digests import Sha256
from ..store.store import Store
from .plan import Planned

if TYPE_CHECKING:
    from ..remote.remote import Remotes


class StatusOracle:
    def __init__(
        self, cache_dir: Path, remotes: Remotes | None = None, warn: Callable[[str], None] = lambda text: None
    ) -> None:
        self.store = Store(cache_dir)
        self._exists = self.store.exists()
        self.remotes = remotes
        self.warn = warn
        self.on_remote: dict[Sha256, str] = {}  # key -> remote name

    def output_id(self, key: Sha256) -> Sha256 | None:
        local = self.store.output_id(key) if self._exists else None
        if local is not None or self.remotes is None:
            return local
        hit = self.remotes.find(key, self.warn)
        if hit is None:
            return None
        self.on_remote[key] = hit[1].spec.name
        return hit[0].output_id

    def status(self, item: Planned) -> str:
        if item.missing_tools:
            return "missing tool"
        record = self.store.read_record(item.key) if item.key and self._exists else None
        if record is not None:
            unsandboxed = "" if record.sandboxed else " (no sandbox)"
            return ("cached" if self.store.has("cas", record.blob.sha256) else "remote") + unsandboxed
        if item.key and item.key in self.on_remote:
            return "remote"
        return "build" if self._exists else "not built"
