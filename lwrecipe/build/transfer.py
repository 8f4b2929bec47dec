"""Moving outputs between the local cache and one remote: choosing what to
push, pushing many keys in parallel, and pulling a dependency closure level by
level (a key needs its dependencies' output ids, which pulled records give).

The wire work (HTTP, directories, signatures) is remote.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..core.digests import Sha256
from ..core.errors import LwrecipeError, UsageError
from ..core.record import BuildRecord
from ..recipes.graph import Graph
from ..remote.backends.base import Backend
from ..remote.remote import Remotes
from ..store.store import Store
from .plan import plan_graph, plan_recipe


def keys_to_push(store: Store, graph: Graph | None, pinned: set[str] | None) -> list[Sha256]:
    """The targets' closure (each must be built here); else the keys among `pinned`
    (what the lockfile names); else every record of the cache. Only records whose
    bytes are here count."""
    if graph is not None:
        keys = []
        for item in plan_graph(graph, store.output_id):
            if item.key is None or store.output_id(item.key) is None:
                raise UsageError(f"{item.name}: not built here (run `lwrecipe build {item.name}` first)")
            keys.append(item.key)
    elif pinned is not None:
        keys = [Sha256(k) for k in sorted(pinned) if store.exists() and store.has("ac", k)]
    else:
        keys = [Sha256(p.name) for p in sorted((store.root / "ac").iterdir())] if store.exists() else []
    return [k for k in keys if (r := store.read_record(k)) and store.has("cas", r.blob.sha256)]


@dataclass
class PushResult:
    pushed: int = 0
    present: int = 0
    errors: list[LwrecipeError] = field(default_factory=list)


def push_keys(remotes: Remotes, backend: Backend, keys: list[Sha256], jobs: int) -> PushResult:
    def one(key: Sha256) -> bool | LwrecipeError:
        try:
            return remotes.push(backend, key, remotes.settings.secret)
        except LwrecipeError as exc:
            return exc

    result = PushResult()
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        for outcome in pool.map(one, keys):
            if isinstance(outcome, LwrecipeError):
                result.errors.append(outcome)
            elif outcome:
                result.pushed += 1
            else:
                result.present += 1
    return result


@dataclass
class PullResult:
    outputs: dict[str, Sha256] = field(default_factory=dict)
    pulled: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    errors: list[LwrecipeError] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # not pulled: absent, refused, or below one of those


def pull_closure(
    remotes: Remotes,
    backend: Backend,
    graph: Graph,
    store: Store,
    jobs: int,
    on_done: Callable[[str, str, str], None] = lambda name, how, output: None,
) -> PullResult:
    """Pull the targets and everything they depend on that is not here already."""
    order = graph.closure(graph.targets)
    result = PullResult()

    def one(name: str) -> tuple[str, BuildRecord | None | LwrecipeError, bool]:
        recipe = graph.recipes[name]
        item = plan_recipe(recipe, {d: result.outputs[d] for d in recipe.depends})
        if item.key is None:
            return name, UsageError(f"{name}: missing host tool {', '.join(item.missing_tools)}"), False
        record = store.read_record(item.key)
        if record is not None and store.has("cas", record.blob.sha256):
            return name, record, False
        try:
            return name, remotes.pull(backend, item.key), True
        except LwrecipeError as exc:
            return name, exc, False

    pending = list(order)
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        while pending:
            level = [n for n in pending if all(d in result.outputs for d in graph.recipes[n].depends)]
            if not level:
                break
            pending = [n for n in pending if n not in level]
            for name, got, fresh in pool.map(one, level):
                if isinstance(got, LwrecipeError):
                    result.errors.append(got)
                elif got is None:
                    result.errors.append(LwrecipeError(f"{name}: not on {backend.spec.name}"))
                else:
                    result.outputs[name] = got.output_id
                    (result.pulled if fresh else result.present).append(name)
                    on_done(name, "pulled" if fresh else "present", got.output_id)
    result.missing = [n for n in order if n not in result.outputs]
    return result
