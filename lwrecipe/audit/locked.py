"""`build --locked`: the rules a locked build is held to — its inputs as the
lockfile pins them before it builds, its outputs as the lockfile names them and
signed by a trusted key after. Saying what broke a rule is the caller's job."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..build.engine import Outcome
from ..build.status import StatusOracle
from ..core.errors import LockDrift
from ..recipes.graph import Graph
from ..remote.signing import PublicKey, signature_finding
from ..store.store import Store
from .lockfile import Lock, drift, read


def check_locked(path: Path, graph: Graph, cache_dir: Path) -> Lock:
    """Refuse before building when an input differs from the lockfile at `path`;
    returns the lock."""
    lock = read(path)
    changes = drift(lock, graph, StatusOracle(cache_dir).output_id)
    if changes:
        raise LockDrift(lock.path.name, [c.text() for c in changes])
    return lock


@dataclass(frozen=True)
class LockedBuild:
    """What a locked build made against its lock: the outputs that differ from it
    (None when none does) and the locked records no trusted key signed."""

    drift: LockDrift | None
    unsigned: tuple[str, ...]


def after_build(lock: Lock, store: Store, outcomes: list[Outcome], trusted: dict[str, PublicKey]) -> LockedBuild:
    """Hold the outcomes of a locked build to its lock."""
    changed = [
        f"{o.name}: output {lock.recipes[o.name]['output_id'][:12]}… → {o.output_id[:12]}…"
        for o in outcomes
        if o.output_id and lock.recipes[o.name]["output_id"] and o.output_id != lock.recipes[o.name]["output_id"]
    ]
    return LockedBuild(
        LockDrift(lock.path.name, changed) if changed else None, tuple(unsigned(store, lock, outcomes, trusted))
    )


def unsigned(store: Store, lock: Lock, outcomes: Iterable[Outcome], trusted: dict[str, PublicKey]) -> list[str]:
    """A release is made of records a trusted key signed: those of the locked recipes
    that no trusted key signed (sign what you build with a signing key, docs/remote.md)."""
    problems = []
    for outcome in outcomes:
        if outcome.name not in lock.recipes or not (outcome.key and outcome.output_id and store.exists()):
            continue
        record = store.read_record(outcome.key)
        finding = record and signature_finding(record, trusted, f"{outcome.name}: output {outcome.output_id[:12]}…")
        if finding:
            problems.append(finding)
    return problems
