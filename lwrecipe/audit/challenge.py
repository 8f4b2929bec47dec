"""`lwrecipe challenge`: do independent builders agree on what the same inputs make?

For each recipe of the targets' closure the build key is computed here, then the
local store, every remote (and, with --rebuild, a fresh local build) is asked
which output id it holds for that key. One verdict per recipe: agree, differ,
or missing. Where builders differ, both archives are fetched (verified by their
sha256) and compared file by file, as `build --check` does. Nothing is stored:
no record is written, a pulled archive stays only as a cas/ blob.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..build.builder import BuildOptions
from ..build.engine import Engine, Outcome
from ..build.plan import Planned, plan_recipe
from ..core.digests import Sha256, is_sha256
from ..core.errors import LwrecipeError, NotReproducible
from ..core.record import BuildRecord
from ..inputs.sources import Fetch
from ..recipes.graph import Graph
from ..remote.backends.base import Backend
from ..remote.remote import Remotes
from ..store.compare import decompress, diffoscope, tree_differences
from ..store.outputs import restore
from ..store.store import Store

LOCAL = "local"
REBUILD = "rebuild"


@dataclass
class Verdict:
    name: str
    key: str | None
    views: dict[str, str] = field(default_factory=dict)  # builder -> output id, "missing", or why not known
    explanation: list[str] = field(default_factory=list)  # what differs, for a disagreement

    @property
    def status(self) -> str:
        ids = {v for v in self.views.values() if is_sha256(v)}
        if self.key is None:
            return "unknown"
        if len(ids) > 1:
            return "differ"
        if not ids:
            return "missing"
        return "agree" if all(is_sha256(v) for v in self.views.values()) else "agree (some missing)"


def challenge(
    graph: Any, store: Store, remotes: Remotes | None, rebuilt: dict[str, str] | None = None, explain: bool = True
) -> list[Verdict]:
    """A verdict per recipe of the closure, in build order. Keys of dependents are
    computed from the local output of each dependency, else the first remote's."""
    outputs: dict[str, Sha256 | None] = {}
    verdicts = []
    records: dict[tuple[str, str], tuple[BuildRecord, Backend | None]] = {}
    for name in graph.closure(graph.targets):
        recipe = graph.recipes[name]
        item = plan_recipe(recipe, {d: outputs.get(d) for d in recipe.depends})
        verdict = Verdict(name, item.key)
        verdicts.append(verdict)
        if item.key is None:
            why = (
                f"missing tool {item.missing_tools[0]}"
                if item.missing_tools
                else f"no output of {', '.join(item.waiting_on)} to key it with"
            )
            verdict.views[LOCAL] = why
            outputs[name] = None
            continue
        local = store.read_record(item.key) if store.exists() else None
        verdict.views[LOCAL] = local.output_id if local else "missing"
        if local:
            records[(name, local.output_id)] = (local, None)
        for backend in remotes.backends if remotes is not None else []:
            try:
                # What a builder holds is asked of any trusted signer: min_signers decides
                # substitution, not whether a disagreement is seen.
                assert remotes is not None  # its backends are being walked
                record = remotes.record(backend, item.key, min_signers=1)
            except LwrecipeError as exc:
                verdict.views[backend.spec.name] = f"refused ({exc})"
                continue
            verdict.views[backend.spec.name] = record.output_id if record else "missing"
            if record:
                records.setdefault((name, record.output_id), (record, backend))
        if rebuilt is not None:
            verdict.views[REBUILD] = rebuilt.get(name, "not rebuilt")
        ids = [v for v in verdict.views.values() if is_sha256(v)]
        outputs[name] = Sha256(ids[0]) if ids else None
        if explain and verdict.status == "differ" and remotes is not None:
            verdict.explanation = _explain(store, remotes, name, sorted(set(ids)), records)
    return verdicts


def rebuild_outputs(
    graph: Graph, store: Store, fetch: Callable[[list[Planned]], Fetch], on_event: Callable[[str, str], None]
) -> dict[str, str]:
    """`challenge --rebuild`: build the targets' closure here again, as `build
    --check` does; each recipe's output id, or why it was not rebuilt."""
    engine = Engine(
        store.ensure(),
        fetch,
        BuildOptions(jobs=os.cpu_count() or 1),
        check=True,
        keep_going=True,
        on_event=on_event,
    )
    outcomes = engine.build(dataclasses.replace(graph, targets=tuple(graph.closure(graph.targets))))
    return {o.name: _rebuilt(o) for o in outcomes}


def _rebuilt(outcome: Outcome) -> str:
    """A rebuild's output id, the other id it rebuilt to, or why it was not rebuilt."""
    if outcome.state == "checked":
        assert outcome.output_id is not None  # a checked build has its output
        return outcome.output_id
    if isinstance(outcome.error, NotReproducible):
        return outcome.error.second
    return f"not rebuilt ({outcome.state})"


def _explain(
    store: Store,
    remotes: Remotes,
    name: str,
    ids: list[str],
    records: dict[tuple[str, str], tuple[BuildRecord, Backend | None]],
) -> list[str]:
    """What differs between the first two outputs builders hold (files, then
    diffoscope's view when it is installed)."""
    found = [records.get((name, i)) for i in ids[:2]]
    pair = [p for p in found if p is not None]
    if len(pair) < len(found):
        return ["(an output held only by a fresh rebuild is compared by `build --check`)"]
    with tempfile.TemporaryDirectory(dir=store.ensure().root / "tmp", prefix="challenge-") as tmp:
        trees, tars = [], []
        for n, (record, backend) in enumerate(pair):
            blob = record.blob.sha256
            try:
                if backend is not None and not store.has("cas", blob):
                    remotes.fetch_blob(record, backend)
                trees.append(Path(tmp) / f"out{n}")
                restore(store, blob, record.output_id, trees[-1])
                tars.append(decompress(store, blob, Path(tmp) / f"out{n}.tar"))
            except LwrecipeError as exc:
                return [f"cannot compare: {exc}"]
        return [
            f"{ids[0][:12]} against {ids[1][:12]}:",
            *tree_differences(trees[0], trees[1]),
            *diffoscope(tars[0], tars[1]),
        ]
