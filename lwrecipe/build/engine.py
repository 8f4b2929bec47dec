"""Deciding what to build: walk the graph in dependency order, reuse what the
store has, build the rest once (one lock per key across processes), running up
to `parallel` independent builds at once, and report outcomes.

A cached dependency is restored only when a dependent actually builds; a fully
cached target runs no build process and fetches nothing. A dependency whose
stored output turns out corrupt when it is restored is rebuilt, never used.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.digests import Sha256
from ..core.errors import IntegrityError, LwrecipeError, MissingToolError, NotReproducible
from ..core.record import BuildRecord
from ..inputs.hosttools import debian_package
from ..inputs.sources import Fetch
from ..recipes.graph import Graph
from ..remote.backends.base import Backend
from ..remote.execution import Executor
from ..remote.remote import Remotes
from ..store.compare import decompress, diffoscope, tree_differences
from ..store.outputs import publish_shared, restore, shared_tree
from ..store.store import Store
from .builder import BuildOptions, build_one
from .plan import Planned, plan_recipe
from .remote_build import build_remote

FINAL = ("cached", "pulled", "remote", "built", "checked", "failed", "skipped")


@dataclass(frozen=True)
class Outcome:
    name: str
    state: str  # one of FINAL; "remote": a remote has it and nothing here needed its bytes
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
    check: bool = False  # rebuild the targets and compare with what is cached
    parallel: int = 1  # builds at once
    on_event: Callable[[str, str], None] = lambda name, state: None
    remotes: Remotes | None = None  # substitution: asked for every key before it is built
    push_to: list[Backend] = field(default_factory=list)  # where what is built here is uploaded
    warn: Callable[[str], None] = lambda text: None
    found: dict[Sha256, tuple[BuildRecord, Backend]] = field(default_factory=dict)
    asked: set[Sha256] = field(default_factory=set)
    outputs: dict[str, Sha256] = field(default_factory=dict)
    records: dict[str, BuildRecord] = field(default_factory=dict)
    planned: dict[str, Planned] = field(default_factory=dict)
    checked: set[str] = field(default_factory=set)
    executor: Executor | None = None  # builds on pinned roots run there (build --executor)
    frozen: dict[Any, Any] = field(default_factory=dict)  # environments hashed for the executor, once per run

    def usable_record(self, key: Sha256) -> BuildRecord | None:
        record = self.store.read_record(key)
        if record is None or not self.store.has("cas", record.blob.sha256):
            return None
        return record

    def build(self, graph: Graph) -> list[Outcome]:
        """Outcomes in build order. After a failure without keep_going, running
        builds finish and nothing new starts; what never started is left out."""
        self.graph = graph
        order = graph.closure(graph.targets)
        if self.check:
            self.checked = set(graph.targets)
        results: dict[str, Outcome] = {}
        self.targets = set(graph.targets)
        with self.store.ensure().lock("gc", shared=True), ThreadPoolExecutor(max(1, self.parallel)) as pool:
            try:
                return self._run(graph, order, results, pool)
            except KeyboardInterrupt:
                if self.executor is not None:  # what runs remotely is stopped there too
                    self.executor.cancel_all()
                raise

    def _run(
        self, graph: Graph, order: list[str], results: dict[str, Outcome], pool: ThreadPoolExecutor
    ) -> list[Outcome]:
        self._prefetch(graph, order)
        running: dict[Future[Outcome], str] = {}
        waiting = list(order)
        stopped = False
        while waiting or running:
            progressed = True
            while progressed and not stopped:
                progressed = False
                for name in list(waiting):
                    deps = graph.recipes[name].depends
                    if any(results[d].state in ("failed", "skipped") for d in deps if d in results):
                        results[name] = Outcome(name, "skipped", None)
                        self.on_event(name, "skipped")
                    elif all(d in results for d in deps) and len(running) < max(1, self.parallel):
                        outcome = self._start(graph, name, pool, running)
                        if outcome is not None:
                            results[name] = outcome
                    else:
                        continue
                    waiting.remove(name)
                    progressed = True
                    if name in results and results[name].state == "failed" and not self.keep_going:
                        stopped = True
                        break
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                results[name] = future.result()
                if results[name].state == "failed" and not self.keep_going:
                    stopped = True
        return [results[n] for n in order if n in results]

    def _start(
        self, graph: Graph, name: str, pool: ThreadPoolExecutor, running: dict[Future[Outcome], str]
    ) -> Outcome | None:
        """The outcome at once when the store has it (or planning fails);
        otherwise the build is submitted to the pool and None returned."""
        recipe = graph.recipes[name]
        try:
            item = plan_recipe(recipe, {d: self.outputs[d] for d in recipe.depends})
            self.planned[name] = item
            if item.missing_tools:
                tool = item.missing_tools[0]
                raise MissingToolError(name, tool, debian_package(tool))
            assert item.key is not None
            record = None if self.rebuild or name in self.checked else self.usable_record(item.key)
            if record is not None:
                return self._done(item, record, "cached")
            if item.key in self.found and name not in self.targets:
                # Only the (checked) record is kept here; the bytes are pulled if a dependent builds.
                record = self.found[item.key][0]
                self.store.put_record(record)
                return self._done(item, record, "remote")
        except LwrecipeError as exc:
            return self._failed(name, exc)
        running[pool.submit(self._guarded, item)] = name
        return None

    def _prefetch(self, graph: Graph, order: list[str]) -> None:
        """Ask the remotes for every key that can be known, level by level, all
        keys of a level at once: a key needs its dependencies' output ids, which a
        remote record gives as well as a local one."""
        if self.remotes is None or not self.remotes.backends or self.rebuild:
            return
        known: dict[str, Sha256] = {}
        settled: set[str] = set()
        with ThreadPoolExecutor(8) as pool:
            while True:
                batch: list[tuple[str, Sha256]] = []
                for name in order:
                    recipe = graph.recipes[name]
                    if name in settled or not all(d in known for d in recipe.depends):
                        continue
                    settled.add(name)
                    item = plan_recipe(recipe, {d: known[d] for d in recipe.depends})
                    if item.key is None or item.missing_tools:
                        continue
                    record = self.usable_record(item.key)
                    if record is not None:
                        known[name] = Sha256(record.output_id)
                    elif name not in self.checked:
                        batch.append((name, item.key))
                if not batch:
                    return
                for (name, _key), hit in zip(batch, pool.map(lambda b: self._ask(b[1]), batch), strict=True):
                    if hit is not None:
                        known[name] = hit[0].output_id

    def _ask(self, key: Sha256) -> tuple[BuildRecord, Backend] | None:
        assert self.remotes is not None
        if key not in self.asked:
            self.asked.add(key)
            hit = self.remotes.find(key, self.warn)
            if hit is not None:
                self.found[key] = hit
        return self.found.get(key)

    def _guarded(self, item: Planned) -> Outcome:
        try:
            if item.name in self.checked:
                return self._check(item)
            return self._produce(item, force=self.rebuild)
        except LwrecipeError as exc:
            return self._failed(item.name, exc)

    def _failed(self, name: str, exc: LwrecipeError) -> Outcome:
        self.on_event(name, "failed")
        return Outcome(name, "failed", None, error=exc)

    def _produce(self, item: Planned, force: bool = False) -> Outcome:
        """Build `item` unless another process has meanwhile (its lock is held while building)."""
        assert item.key is not None
        with self.store.lock(f"build-{item.key}"):
            record = None if force else self.usable_record(item.key)
            if record is not None:
                return self._done(item, record, "cached")
            record = None if force else self._substitute(item)
            if record is not None:
                return self._done(item, record, "pulled")
            record = self._build(item, keep_record=True)
            self._push(item.name, item.key)
        return self._done(item, record, "built")

    def _substitute(self, item: Planned) -> BuildRecord | None:
        """Download the item's output from a remote that has it; None to build it here."""
        assert item.key is not None
        if self.remotes is None or not self.remotes.backends:
            return None
        hit = self._ask(item.key)
        if hit is None:
            return None
        self.on_event(item.name, "pulling")
        try:
            return self.remotes.materialise(*hit)
        except LwrecipeError as exc:
            self.warn(f"{item.name}: {exc}; building it here instead")
            return None

    def _push(self, name: str, key: Sha256) -> None:
        if self.remotes is None:
            return
        for backend in self.push_to:
            self.on_event(name, "pushing")
            try:
                self.remotes.push(backend, key, self.options.secret)
            except LwrecipeError as exc:
                self.warn(f"{name}: push to {backend.spec.name} failed: {exc}")

    def _build(self, item: Planned, keep_record: bool) -> BuildRecord:
        self.on_event(item.name, "fetching")
        fetched = self.fetch([item])
        self.on_event(item.name, "building")
        with tempfile.TemporaryDirectory(dir=self.store.root / "tmp", prefix="deps-") as tmp:
            deps = self.dependencies(item, Path(tmp))
            current = plan_recipe(item.recipe, {d: self.outputs[d] for d in item.recipe.depends})
            if current.key != item.key:
                raise IntegrityError(
                    f"{item.name}: a dependency rebuilt to different bytes than its cached output; run the build again"
                )
            logs, substituted = self.store.root / "logs", self.graph.substitutions(item.name)
            if self.executor is not None and item.recipe.pinned_root:
                return build_remote(
                    self.store,
                    self.executor,
                    self.frozen,
                    item,
                    fetched,
                    deps,
                    self.options,
                    logs,
                    keep_record=keep_record,
                    substituted=substituted,
                    on_stage=lambda stage: self.on_event(item.name, stage),
                    fresh=self.rebuild or item.name in self.checked,
                )
            if self.executor is not None:
                self.warn(
                    f"{item.name}: built here: a recipe on host tools has no pinned root file system "
                    f"to send to {self.executor.name}"
                )
            return build_one(
                self.store, item, fetched, deps, self.options, logs, keep_record=keep_record, substituted=substituted
            )

    def dependencies(self, item: Planned, where: Path) -> dict[str, Path]:
        """Every dependency's output for a build of `item`: restored into `where`, the
        environment shared (the engine must have built or found them)."""
        return {
            d: self._environment(d) if d == item.recipe.environment else self._restore(d, where / d)
            for d in item.recipe.depends
        }

    def _restore(self, name: str, dest: Path) -> Path:
        """Unpack a dependency's output. One known only from a remote is pulled first;
        a corrupt or vanished local one is rebuilt (or pulled) first."""
        record = self.records[name]
        if self.store.has("cas", record.blob.sha256):
            try:
                restore(self.store, record.blob.sha256, record.output_id, dest)
                return dest
            except IntegrityError:
                shutil.rmtree(dest, ignore_errors=True)
                self.on_event(name, "rebuilding")
        self._produce(self.planned[name])
        record = self.records[name]
        restore(self.store, record.blob.sha256, record.output_id, dest)
        return dest

    def _environment(self, name: str) -> Path:
        """An environment's output, unpacked once per store (envs/<output id>) and
        shared read-only by every build on it, instead of a copy per build."""
        shared = shared_tree(self.store, self.records[name].output_id)
        if not shared.is_dir():
            with tempfile.TemporaryDirectory(dir=self.store.root / "tmp", prefix="env-") as tmp:
                publish_shared(self._restore(name, Path(tmp) / "root"), shared)
        return shared

    def _check(self, item: Planned) -> Outcome:
        assert item.key is not None
        first = self.usable_record(item.key)
        if first is None:
            self._produce(item)
            first = self.records[item.name]
        second = self._build(item, keep_record=False)
        if second.output_id != first.output_id:
            raise NotReproducible(item.name, first.output_id, second.output_id, self._explain(first, second))
        # Reproduced here: a record that was pulled is now also this builder's to
        # vouch for, and --push co-signs it on the remotes.
        self.store.mark_reproduced(item.key)
        self._push(item.name, item.key)
        return self._done(item, first, "checked")

    def _explain(self, first: BuildRecord, second: BuildRecord) -> list[str]:
        with tempfile.TemporaryDirectory(dir=self.store.root / "tmp", prefix="check-") as tmp:
            a, b = Path(tmp) / "cached", Path(tmp) / "rebuild"
            restore(self.store, first.blob.sha256, first.output_id, a)
            restore(self.store, second.blob.sha256, second.output_id, b)
            lines = tree_differences(a, b)
            lines += diffoscope(
                decompress(self.store, first.blob.sha256, Path(tmp) / "cached.tar"),
                decompress(self.store, second.blob.sha256, Path(tmp) / "rebuild.tar"),
            )
        lines.append(f"rebuilt output kept as cas/{second.blob.sha256}")
        return lines

    def _done(self, item: Planned, record: BuildRecord, state: str) -> Outcome:
        self.outputs[item.name] = Sha256(record.output_id)
        self.records[item.name] = record
        if state == "cached":
            self.store.touch("ac", record.key)
            self.store.touch("cas", record.blob.sha256)
        if state in ("cached", "built", "pulled"):
            self.store.set_last(item.name, Sha256(record.key))
        self.on_event(item.name, state)
        return Outcome(
            item.name,
            state,
            item.key,
            Sha256(record.output_id),
            float(record.duration_s or 0.0) if state == "built" else 0.0,
        )
