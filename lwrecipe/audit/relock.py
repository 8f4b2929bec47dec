"""`lock`: the lockfile's entries made again from the recipes and this cache, and
whether that changes the file. Writing it, or refusing a stale one, is the
caller's choice."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..build.status import StatusOracle
from ..recipes.graph import Graph
from ..store.store import Store
from .lockfile import FirstUsePins, build_entries, locked_outputs, read, render


@dataclass(frozen=True)
class Relock:
    """The lockfile at `path` made again: its entries and text, and the text it had
    (None: there was none)."""

    path: Path
    entries: dict[str, dict[str, Any]]
    text: str
    old: str | None

    @property
    def current(self) -> bool:
        return self.old == self.text

    def changed(self) -> list[str]:
        """The recipes whose entries change; `(format)` when only the text does."""
        before = read(self.path).recipes if self.old is not None else {}
        return sorted(n for n in self.entries if before.get(n) != self.entries[n]) or ["(format)"]


def relock(graph: Graph, cache_dir: Path, path: Path, keep_others: bool) -> Relock:
    """The entries of the graph's targets and their closure as this cache sees them
    (an output the lockfile already pins for the same key counts); keep_others: the
    other recipes the lockfile has stay as they are, else they go."""
    previous = read(path).recipes if path.exists() else {}
    entries = dict(previous) if keep_others else {}
    entries.update(
        build_entries(
            graph,
            Store(cache_dir),
            locked_outputs(previous, StatusOracle(cache_dir).output_id),
            FirstUsePins.of(previous),
        )
    )
    return Relock(path, entries, render(entries), path.read_text() if path.exists() else None)
