"""`lwrecipe audit`: a release checked against its lockfile.

Checks the checkout (recipe files, in-repo patches and path sources), the
cache (every source, tree, patch, record, output and log re-hashed; what does
not match is quarantined and reported; record signatures) and the lockfile's own
consistency (each key recomputed from its pinned inputs), and lists the full
input tree with what is weakly pinned, unsigned or missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.digests import Sha256, is_sha256, sha256_bytes
from ..core.record import BuildRecord
from ..inputs.gitsrc import read_member
from ..recipes.keys import built_on
from ..remote.signing import PublicKey, signature_finding
from ..store.outputs import output_finding
from ..store.store import Store, file_sha256, misnamed
from .lockfile import Lock, drift, pinned_key


@dataclass
class Finding:
    recipe: str
    what: str
    mismatch: bool  # True: exit 3; False: a flag for the auditor

    def text(self) -> str:
        return f"{self.recipe}: {self.what}"


@dataclass
class AuditReport:
    findings: list[Finding] = field(default_factory=list)
    tree: dict[str, Any] = field(default_factory=dict)

    @property
    def mismatches(self) -> list[Finding]:
        return [f for f in self.findings if f.mismatch]

    @property
    def flags(self) -> list[Finding]:
        return [f for f in self.findings if not f.mismatch]


class _Cache:
    """The store as an audit reads it: every entry re-hashed against its name
    (`quick`: only whether it is there). A corrupt entry is quarantined, never
    deleted, and reported as a mismatch naming the file, both digests and where
    it went."""

    def __init__(self, store: Store, quick: bool) -> None:
        self.store, self.quick = store, quick

    def holds(self, kind: str, sha: str, label: str, add: Any) -> bool:
        """Whether the store holds `kind/sha` with the right bytes."""
        if not self.store.exists() or not is_sha256(sha):
            return False
        path = self.store.path(kind, sha)
        if not path.is_file():
            return False
        if self.quick:
            return True
        actual = file_sha256(path)
        if actual == sha:
            return True
        moved = self.store.quarantine(path, misnamed(actual, sha))
        add(f"{label}: {kind}/{sha}: sha256 {actual}, expected {sha}; moved to {moved}", True)
        return False

    def record(self, key: str, label: str, add: Any) -> BuildRecord | None:
        if not self.store.exists() or not is_sha256(key) or not self.store.path("ac", key).is_file():
            return None
        record = self.store.read_record(Sha256(key))
        if record is None:  # read_record quarantined it
            add(f"{label}: ac/{key}: not a build record for its key; moved to {self.store.root / 'quarantine'}", True)
        return record


def audit(
    lock: Lock,
    root: Path,
    store: Store,
    trusted: dict[str, PublicKey],
    graph: Any = None,
    strict: bool = False,
    quick: bool = False,
) -> AuditReport:
    """`graph`: the lock's recipes as loaded from the checkout, to compare every
    keyed input (host tools and dependency outputs included) with the lock.
    `strict`: a record that no trusted key signed is a mismatch, not a flag.
    Every cached source, patch, tree, record, output and log the lock names is
    re-hashed (`quick`: only looked for); what does not match is quarantined."""
    report = AuditReport()
    cache = _Cache(store, quick)
    records = {}  # read first: comparing the checkout with the lock reads them too, and would drop a broken one
    for name, e in sorted(lock.recipes.items()):
        if e["output_id"]:
            records[name] = cache.record(
                e["key"],
                f"output {e['output_id'][:12]}…",
                lambda what, mismatch, name=name: report.findings.append(Finding(name, what, mismatch)),
            )
    if graph is not None:
        for change in drift(lock, graph, store.output_id):
            report.findings.append(Finding(change.recipe, f"{change.field}: {change.old} → {change.new}", True))
    for name, e in sorted(lock.recipes.items()):

        def add(what: str, mismatch: bool, name: str = name) -> None:
            report.findings.append(Finding(name, what, mismatch))

        recipe_path = root / e["recipe"]
        if not recipe_path.is_file():
            add(f"recipe file {e['recipe']} is missing", True)
        elif file_sha256(recipe_path) != e["recipe_sha256"]:
            add(
                f"recipe file {e['recipe']}: sha256 {e['recipe_sha256'][:12]}… → {file_sha256(recipe_path)[:12]}…", True
            )
        recomputed = pinned_key(name, e)
        if e["key"] and recomputed and recomputed != e["key"]:
            add(f"key {e['key'][:12]}… does not follow from the pinned inputs ({recomputed[:12]}…)", True)
        trees = {s.get("name"): s for s in e["sources"] if s["kind"] == "git"}
        for i, p in enumerate(e["patches"]):
            if p["origin"] == "file" and not (root / p["file"]).is_file():
                add(f"patches[{i}] ({p['file']}): missing", True)
            elif p["origin"] == "url":
                cache.holds("sources", p["sha256"], f"patches[{i}] ({p['url']})", add)
            elif p["origin"] == "source" and not p["sha256"]:
                add(f"patches[{i}] ({p['source']}:{p['path']}): pinned only by the git commit of {p['source']}", False)
            elif p["origin"] == "source" and not quick:
                tree = trees.get(p["source"], {}).get("tree_sha256", "")
                if cache.holds("sources", tree, f"patches[{i}] ({p['source']}:{p['path']})", add):
                    data = read_member(store.path("sources", tree), p["path"])
                    actual = sha256_bytes(data) if data is not None else "(not in the tree)"
                    if actual != p["sha256"]:
                        add(f"patches[{i}] ({p['source']}:{p['path']}): sha256 {actual}, locked {p['sha256']}", True)
        if built_on(e.get("environment"), bool(e.get("bootstrap"))) == "host":
            add("built on host tools: its key holds this machine's tool fingerprints, not a pinned environment", False)
        absent_debs = [
            s
            for i, s in enumerate(e["sources"])
            if s["kind"] == "deb"
            and store.exists()
            and not cache.holds("sources", s["sha256"], f"sources[{i}] (deb {s['package']})", add)
        ]
        if absent_debs:
            add(
                f"{len(absent_debs)} of {sum(s['kind'] == 'deb' for s in e['sources'])} Debian packages "
                "not in the cache",
                False,
            )
        for i, s in enumerate(e["sources"]):
            if s["kind"] == "deb":
                continue  # counted above
            if s["kind"] == "path":
                if not (root / s["path"]).exists():
                    add(f"sources[{i}] ({s['path']}): missing", True)
            elif s["kind"] == "url":
                label = f"sources[{i}] ({s['url']})"
                if store.exists() and not cache.holds("sources", s["sha256"], label, add):
                    add(f"{label}: not in the cache", False)
            else:
                label = f"sources[{i}] ({s['url']} @ {s['rev'][:12]})"
                if not s.get("tree_sha256"):
                    add(f"{label}: pinned only by a git commit (tree sha256 not yet recorded)", False)
                elif store.exists() and not cache.holds("sources", s["tree_sha256"], label, add):
                    add(f"{label}: tree not in the cache", False)
        _audit_output(e, records.get(name), cache, trusted, add, strict)
        report.tree[name] = _tree_entry(e)
    return report


def _audit_output(
    e: dict[str, Any],
    record: BuildRecord | None,
    cache: _Cache,
    trusted: dict[str, PublicKey],
    add: Any,
    strict: bool,
) -> None:
    if not e["output_id"]:
        add("not built when locked (no output id)", False)
        return
    where = f"output {e['output_id'][:12]}…"
    if record is None:
        add(f"{where}: not in the cache", False)
        return
    if record.output_id != e["output_id"]:
        add(f"{where} → {record.output_id[:12]}… (the cache built it differently)", True)
        return
    blob = record.blob.sha256
    if not cache.store.has("cas", blob):
        add(f"{where}: record here, bytes not in the cache", False)
    elif not cache.quick:
        why = output_finding(cache.store, Sha256(blob), Sha256(e["output_id"]))
        if why is not None:
            add(f"{where}: cas/{blob}: {why}", True)
    if cache.store.has("cas", record.log) and not cache.quick:
        cache.holds("cas", record.log, f"{where}: its build log", add)
    if not record.sandboxed:
        add(f"output {e['output_id'][:12]}…: built without a sandbox (--no-sandbox)", strict)
    finding = signature_finding(record, trusted, f"output {e['output_id'][:12]}…")
    if finding is not None:
        unsigned = "not signed" in finding or "untrusted" in finding
        add(finding, strict or not unsigned)


def _tree_entry(e: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": e["version"],
        "license": e["license"],
        "recipe": e["recipe"],
        "key": e["key"],
        "output_id": e["output_id"],
        "depends": e["depends"],
        "sources": [
            {
                k: v
                for k, v in s.items()
                if k in ("kind", "url", "mirrors", "sha256", "rev", "tree_sha256", "path", "package", "version", "arch")
            }
            for s in e["sources"]
        ],
        "built_on": built_on(e.get("environment"), bool(e.get("bootstrap"))),
        "patches": [
            {k: v for k, v in p.items() if k in ("origin", "file", "url", "source", "path", "sha256")}
            for p in e["patches"]
        ],
        "host_tools": {t: v["version"] or v["sha256"] for t, v in e["host_tools"].items()},
    }


def render_tree(report: AuditReport) -> list[str]:
    lines = []
    for name, t in report.tree.items():
        lines.append(f"{name} {t['version']}  ({t['license']})  {t['recipe']}")
        lines.append(f"  key {t['key'] or '(unknown)'}  output {t['output_id'] or '(not built)'}")
        lines.append(f"  depends: {', '.join(t['depends']) or '-'}")
        lines.append(f"  built on: {t['built_on']}")
        for s in t["sources"]:
            if s["kind"] == "deb":
                lines.append(f"  deb {s['package']} {s['version']} {s['arch']}  sha256 {s['sha256']}")
            elif s["kind"] == "url":
                lines.append(f"  source {s['url']}  sha256 {s['sha256']}")
                lines += [f"    mirror {m}" for m in s.get("mirrors", [])]
            elif s["kind"] == "git":
                lines.append(f"  source git {s['url']} @ {s['rev']}  tree {s.get('tree_sha256') or '(unknown)'}")
            else:
                lines.append(f"  source {s['path']} (in repo)  sha256 {s['sha256']}")
        for p in t["patches"]:
            origin = p.get("file") or p.get("url") or f"{p.get('source')}:{p.get('path')}"
            lines.append(f"  patch {origin}  sha256 {p['sha256'] or '(pinned by commit)'}")
        for tool, version in t["host_tools"].items():
            lines.append(f"  tool {tool}: {version or '(missing when locked)'}")
    return lines
