"""`cache verify --repair`: get again what verifying the store quarantined —
sources from the recipes (through the mirrors), records and output blobs from
the remotes. Finding what is corrupt is store/verify.py's job."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.digests import Sha256
from ..core.errors import LwrecipeError
from ..inputs.fetch import Downloader, Wanted
from ..inputs.gitsrc import fetch_tree
from ..inputs.mirrors import Mirrors
from ..inputs.sources import downloads, git_sources
from ..recipes.graph import Graph
from ..remote.remote import Remotes
from ..store.store import Quarantined, Store
from ..store.verify import git_trees

if TYPE_CHECKING:
    from ..inputs.web import Client


@dataclass(frozen=True)
class Repair:
    """One quarantined entry got again (`done`) or not, and how or why not."""

    entry: str  # sources/<sha>, ac/<key>
    done: bool
    how: str

    def line(self) -> str:
        return f"repaired {self.entry} {self.how}" if self.done else f"not repaired: {self.entry}: {self.how}"


OnRepair = Callable[[Repair], None]


def repair_sources(
    store: Store,
    graph: Graph,
    root: Path,
    mirrors: Mirrors,
    client: Client,
    quarantined: Iterable[Quarantined],
    on_repair: OnRepair,
) -> None:
    """Fetch again each quarantined source a recipe of the project at `root` names
    (`graph`: all its recipes), a download or a git tree."""
    wanted: dict[str, Wanted] = {w.sha256: w for r in graph.recipes.values() for w in downloads(r, mirrors)}
    trees = git_trees(store)
    gits = {src.rev: (label, src.git) for r in graph.recipes.values() for label, src in git_sources(r)}
    downloader = Downloader(store, client, mirrors=mirrors.files, held=mirrors.held)
    for entry in quarantined:
        if entry.area != "sources":
            continue
        where = f"sources/{entry.name}"
        try:
            if entry.name in wanted:
                got = downloader.fetch(wanted[entry.name])
                on_repair(Repair(where, True, f"from {got.origin}"))
            elif trees.get(entry.name) in gits:
                rev = trees[entry.name]
                label, url = gits[rev]
                got_tree = fetch_tree(store, label, url, rev, mirrors=mirrors)
                on_repair(Repair(where, True, f"(git {rev[:12]}) from {got_tree.origin}"))
            else:
                on_repair(Repair(where, False, f"no recipe of {root} names it"))
        except LwrecipeError as exc:
            on_repair(Repair(where, False, str(exc)))


def pull_again(remotes: Remotes | None, keys: Iterable[str], on_repair: OnRepair) -> None:
    """Pull again the records of `keys` with their blobs from the first remote that
    has each; None: no remote is configured."""
    for key in sorted(keys):
        where = f"ac/{key}"
        if remotes is None:
            on_repair(Repair(where, False, "no remote is configured to pull it from"))
            continue
        try:
            found = remotes.find(Sha256(key))
            if found is None:
                on_repair(Repair(where, False, "no remote has it"))
                continue
            record, backend = found
            remotes.materialise(record, backend)
            on_repair(Repair(where, True, f"({record.name}) and its blobs from {backend.spec.name}"))
        except LwrecipeError as exc:
            on_repair(Repair(where, False, str(exc)))
