"""`cache verify`: re-hash the whole store, recheck the facts beside it, and say
which entries a repair must get again. Getting them again is not this module's
job (build/repair.py: it needs the mirrors and the remotes)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..core.digests import Sha256, is_git_rev, is_sha256
from .outputs import recheck_facts
from .store import Quarantined, Store, VerifyReport


@dataclass(frozen=True)
class CacheCheck:
    """What one `cache verify` found: the store's report (its `checked` counts the
    facts too) and the `checked/` facts it removed as wrong."""

    report: VerifyReport
    wrong: tuple[str, ...]

    @property
    def corrupt(self) -> int:
        return len(self.report.quarantined) + len(self.wrong)


def verify_cache(store: Store) -> CacheCheck:
    """Re-hash every entry (quarantining what is corrupt) and every output's fact."""
    report = store.verify_all()
    wrong: list[str] = []
    if store.exists():
        facts, wrong = recheck_facts(store)
        report.checked += facts
    return CacheCheck(report, tuple(wrong))


def git_trees(store: Store) -> dict[str, str]:
    """The git revisions whose canonical tree the store holds, by the tree's sha256."""
    trees: dict[str, str] = {}
    for ref in (store.root / "refs").glob("git-*"):
        rev = ref.name.removeprefix("git-")
        if is_git_rev(rev):  # not a .commit or a .tmp
            trees.setdefault(ref.read_text().strip(), rev)
    return trees


def keys_to_pull(store: Store, quarantined: Iterable[Quarantined]) -> set[str]:
    """The build keys whose record, output blob or log was quarantined: what a
    repair pulls again from a remote."""
    keys = set()
    holders: dict[str, set[str]] | None = None  # blob -> the keys whose record names it, read once
    for entry in quarantined:
        if entry.area == "ac":
            keys.add(entry.name)
        elif entry.area == "cas":
            if holders is None:
                holders = _blob_holders(store)
            keys |= holders.get(entry.name, set())
    return keys


def _blob_holders(store: Store) -> dict[str, set[str]]:
    """For each output blob and log the records name, the keys of those records."""
    holders: dict[str, set[str]] = {}
    for path in (store.root / "ac").iterdir():
        record = store.read_record(Sha256(path.name)) if is_sha256(path.name) else None
        if record is not None:
            for blob in (record.blob.sha256, record.log):
                holders.setdefault(blob, set()).add(path.name)
    return holders
