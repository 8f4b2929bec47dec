"""`checkout`: a built output (and with its dependencies, theirs) materialised in a
new directory from this cache. Building or pulling what is missing is not its job."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import UsageError
from ..recipes.graph import Graph
from ..store.outputs import restore
from .plan import plan_graph
from .status import StatusOracle


@dataclass(frozen=True)
class CheckedOut:
    name: str
    output_id: str
    where: Path


def checkout(cache_dir: Path, graph: Graph, dest: Path, with_deps: bool) -> Iterator[CheckedOut]:
    """Restore the graph's one target's output to `dest` (with_deps: each of its
    closure's to `dest/<name>`), saying each as it is done; UsageError when `dest`
    exists or an output is not built or not in this cache."""
    oracle = StatusOracle(cache_dir)
    planned = {p.name: p for p in plan_graph(graph, oracle.output_id)}
    if dest.exists():
        raise UsageError(f"{dest}: already exists")
    target = graph.targets[0]
    names = graph.closure([target]) if with_deps else [target]
    for name in names:
        key = planned[name].key
        record = oracle.store.read_record(key) if key else None
        if record is None:
            raise UsageError(f"{name}: not built (run `lwrecipe build {name}` first)")
        where = dest / name if with_deps else dest
        if not oracle.store.has("cas", record.blob.sha256):
            raise UsageError(
                f"{name}: output {record.output_id[:12]} is known but its bytes are not in this "
                f"cache (run `lwrecipe cache pull REMOTE {name}`)"
            )
        restore(oracle.store, record.blob.sha256, record.output_id, where)
        yield CheckedOut(name, record.output_id, where)
