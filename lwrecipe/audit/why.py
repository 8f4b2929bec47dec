"""`lwrecipe why`: why a recipe is not cached, or differs from the lockfile or
from its last build on this cache — walking down dependencies to the inputs
that actually changed (compare bitbake-diffsigs, nix-diff).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..build.plan import document_of, key_if_complete
from ..core.digests import Sha256
from ..core.errors import LwrecipeError
from ..recipes.graph import Graph
from ..remote.backends.base import Backend
from ..remote.remote import Remotes
from ..store.store import Store
from .explain import Change, diff_documents
from .lockfile import Lock, key_document


@dataclass
class Reason:
    recipe: str
    key: str | None  # None while a dependency is unbuilt or a tool missing
    cached: bool
    against: list[tuple[str, list[Change]]] = field(default_factory=list)  # ("lockfile" | "last build", changes)
    causes: list[Reason] = field(default_factory=list)  # dependencies that explain changes here
    absent: list[str] = field(default_factory=list)  # other sides that hold no record of it
    other_key: str | None = None  # the key of the other side's record it was compared with

    @property
    def root_cause(self) -> bool:
        """Changed inputs of its own, not only through dependencies."""
        return any(c.dependency is None for _, changes in self.against for c in changes)

    def document(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "key": self.key,
            "cached": self.cached,
            "root_cause": self.root_cause,
            "differences": [
                {"against": what, "changes": [c.document() for c in changes]} for what, changes in self.against
            ],
            "absent_from": self.absent,
            "causes": [c.document() for c in self.causes],
        }

    def lines(self, depth: int = 0) -> list[str]:
        pad = "  " * depth
        if self.cached:
            state = f"cached (key {self.key[:12]}…)" if self.key else "cached"
        elif self.key:
            state = f"not cached (key {self.key[:12]}…)" + (
                "" if self.against or self.causes else ": never built on this cache"
            )
        else:
            state = "key unknown until its dependencies are built"
        out = [f"{pad}{self.recipe}: {state}" + ("  ← root cause" if self.root_cause else "")]
        for what, changes in self.against:
            out.append(f"{pad}  differs from the {what}:")
            out += [f"{pad}    {c.text()}" for c in changes]
        out += [f"{pad}  {what}: holds no record of it" for what in self.absent]
        for cause in self.causes:
            out += cause.lines(depth + 1)
        return out


class OtherSide(Protocol):
    """Another builder's records, read without its cache: a remote's (by its
    names/<recipe> index) or a lockfile's."""

    @property
    def label(self) -> str:  # "remote team", ...
        ...

    def document(self, name: str, output_id: str | None) -> tuple[str, dict[str, Any]] | None:
        """The key and key document of its record for recipe `name`: the one with
        this output id when given, else its newest."""
        ...


@dataclass
class RemoteSide:
    """A remote's records for `why --remote`: the keys its names/<recipe> index
    lists (newest push first), each record signature-checked as for a pull."""

    remotes: Remotes
    backend: Backend

    @property
    def label(self) -> str:
        return f"remote {self.backend.spec.name}"

    def document(self, name: str, output_id: str | None) -> tuple[str, dict[str, Any]] | None:
        for key in self.remotes.recent_keys(self.backend, name):
            try:
                record = self.remotes.record(self.backend, key, min_signers=1)
            except LwrecipeError:
                continue  # refused (untrusted, altered, unreachable): nothing to compare with
            if (
                record is not None
                and record.inputs is not None
                and (output_id is None or record.output_id == output_id)
            ):
                return key, record.inputs.document()
        return None


class Why:
    def __init__(self, graph: Graph, store: Store, lock: Lock | None) -> None:
        self.graph, self.store, self.lock = graph, store, lock
        self._outputs: dict[str, Sha256 | None] = {}
        self._reasons: dict[str, Reason] = {}

    def output(self, name: str) -> Sha256 | None:
        """The output id the store holds for the recipe's current key, if any."""
        if name not in self._outputs:
            self.explain(name)
        return self._outputs[name]

    def _last_document(self, name: str) -> tuple[str, dict[str, Any]] | None:
        key = self.store.last(name) if self.store.exists() else None
        record = self.store.read_record(key) if key else None
        return (record.key, record.inputs.document()) if record and record.inputs is not None else None

    def explain(self, name: str) -> Reason:
        if name in self._reasons:
            return self._reasons[name]
        recipe = self.graph.recipes[name]
        deps = {d: self.output(d) for d in recipe.depends}
        doc = document_of(recipe, deps)
        key = key_if_complete(doc)
        record = self.store.read_record(key) if key and self.store.exists() else None
        cached = bool(record and self.store.has("cas", record.blob.sha256))
        self._outputs[name] = record.output_id if record else None
        reason = Reason(name, key, cached)
        self._reasons[name] = reason
        entry = self.lock.recipes.get(name) if self.lock else None
        if (
            entry is not None
            and key
            and entry.get("key") == key
            and record
            and entry.get("output_id")
            and entry["output_id"] != record.output_id
        ):
            reason.against.append(
                (
                    "lockfile",
                    [
                        Change(
                            name,
                            "output from the same inputs",
                            f"output {entry['output_id'][:12]}…",
                            f"{record.output_id[:12]}… (not reproducible?)",
                        )
                    ],
                )
            )
        if entry is not None and entry.get("key", "") != (key or ""):
            changes = diff_documents(name, key_document(name, entry), doc)
            if changes:
                reason.against.append(("lockfile", changes))
        last = self._last_document(name)
        if not cached and last is not None and last[0] != key:
            changes = diff_documents(name, last[1], doc)
            if changes:
                reason.against.append(("last build", changes))
        culprits = {c.dependency for _, changes in reason.against for c in changes if c.dependency}
        culprits |= {d for d, out in deps.items() if out is None}
        for dep in sorted(culprits):
            cause = self.explain(dep)
            if cause.against or cause.causes or not cause.cached:
                reason.causes.append(cause)
        return reason

    def compare(self, name: str, other: OtherSide, output_id: str | None = None) -> Reason:
        """This machine's inputs for `name` against the record another side holds
        (the one with `output_id`, when a dependent's record names it), walking into
        every dependency whose output differs or is not known here."""
        recipe = self.graph.recipes[name]
        deps = {d: self.output(d) for d in recipe.depends}
        doc = document_of(recipe, deps)
        key = key_if_complete(doc)
        reason = Reason(name, key, cached=self.output(name) is not None)
        found = other.document(name, output_id)
        if found is None:
            reason.absent.append(other.label)
            return reason
        their_key, theirs = found
        reason.other_key = their_key
        if their_key == key:
            return reason
        changes = diff_documents(name, theirs, doc)
        if changes:
            reason.against.append((other.label, changes))
        their_deps = theirs.get("deps", {})
        for dep in recipe.depends:
            if deps[dep] is None or deps[dep] != their_deps.get(dep):
                cause = self.compare(dep, other, their_deps.get(dep))
                if cause.against or cause.causes or cause.absent:
                    reason.causes.append(cause)
        return reason


@dataclass(frozen=True)
class RemoteWhy:
    """`why --remote`: one remote's answer. `unused`: when its newest record has the
    same inputs, why a build here would not use it (None: it would, or not asked)."""

    remote: str
    label: str
    reason: Reason
    unused: str | None = None

    @property
    def same(self) -> bool:
        return not (self.reason.against or self.reason.causes or self.reason.absent)


def against_remotes(why: Why, remotes: Remotes, name: str, ask_use: bool) -> Iterator[RemoteWhy]:
    """This machine's inputs of `name` against each remote's newest record of it,
    and down through the dependencies its record names, one remote at a time.
    ask_use: where the inputs are the same, fetch the record as a build would."""
    for backend in remotes.backends:
        side = RemoteSide(remotes, backend)
        reason = why.compare(name, side)
        found = RemoteWhy(backend.spec.name, side.label, reason)
        if ask_use and found.same:
            try:  # the same inputs: then why a build here does not use it, if it does not
                assert reason.other_key is not None  # the same inputs: its record was found
                remotes.record(backend, Sha256(reason.other_key))
            except LwrecipeError as exc:
                found = RemoteWhy(found.remote, found.label, reason, str(exc))
        yield found
