"""Deciding what to build: walk the graph in order, reuse what the store has,
build the rest once (one lock per key across processes), and report outcomes.

A cached dependency is restored only when a dependent actually builds; a fully
cached target runs no build process and fetches nothing.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .builder import BuildOptions, build_one
from .errors import IntegrityError, LwrecipeError, MissingToolError
from .graph import Graph
from .hosttools import debian_package
from .keys import Sha256
from .outputs import restore
from .plan import Planned, plan_recipe
from .sources import Fetch
from .store import Store


@dataclass(frozen=True)
class Outcome:
    name: str
    state: str  # "cached" | "built" | "failed" | "skipped"
    key: Sha256 | None
    output_id: Sha256 | None = None
    seconds: float = 0.0
    error: LwrecipeError | None = None


@dataclass
class Engine:
    store: Store
    fetch: Callable[[list[Planned]], Fetch]  # fetches the inputs of the given recipes
    options: BuildOptions
    rebuild: bool = False
    keep_going: bool = False
    on_event: Callable[[str, str], None] = lambda name, state: None
    outputs: dict[str, Sha256] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    def usable_record(self, key: Sha256) -> dict[str, Any] | None:
        record = self.store.read_record(key)
        if record is None or not self.store.has("cas", record["blob"]["sha256"]):
            return None
        return record

    def build(self, graph: Graph) -> list[Outcome]:
        outcomes: list[Outcome] = []
        failed: set[str] = set()
        for name in graph.closure(graph.targets):
            recipe = graph.recipes[name]
            if failed.intersection(recipe.depends):
                outcomes.append(Outcome(name, "skipped", None))
                failed.add(name)
                continue
            try:
                outcomes.append(self._one(graph, plan_recipe(recipe, {d: self.outputs[d] for d in recipe.depends})))
            except LwrecipeError as exc:
                self.on_event(name, "failed")
                outcomes.append(Outcome(name, "failed", None, error=exc))
                failed.add(name)
                if not self.keep_going:
                    break
        return outcomes

    def _one(self, graph: Graph, item: Planned) -> Outcome:
        if item.missing_tools:
            tool = item.missing_tools[0]
            raise MissingToolError(item.name, tool, debian_package(tool))
        assert item.key is not None
        record = None if self.rebuild else self.usable_record(item.key)
        if record is not None:
            return self._done(item, record, "cached")
        with self.store.lock(f"build-{item.key}"):
            record = None if self.rebuild else self.usable_record(item.key)
            if record is not None:
                return self._done(item, record, "cached")
            self.on_event(item.name, "building")
            fetched = self.fetch([item])
            with tempfile.TemporaryDirectory(dir=self.store.ensure().root / "tmp", prefix="deps-") as tmp:
                deps = {d: self._restore(d, Path(tmp) / d) for d in item.recipe.depends}
                record = build_one(self.store, item, fetched, deps, self.options, self.store.root / "logs")
        return self._done(item, record, "built")

    def _restore(self, name: str, dest: Path) -> Path:
        record = self.records[name]
        try:
            restore(self.store, record["blob"]["sha256"], record["output_id"], dest)
        except IntegrityError:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        return dest

    def _done(self, item: Planned, record: dict[str, Any], state: str) -> Outcome:
        self.outputs[item.name] = Sha256(record["output_id"])
        self.records[item.name] = record
        self.on_event(item.name, state)
        return Outcome(item.name, state, item.key, Sha256(record["output_id"]),
                       float(record.get("duration_s", 0.0)) if state == "built" else 0.0)
