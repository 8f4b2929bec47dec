"""`lwrecipe audit`: a release checked against its lockfile.

Checks the checkout (recipe files, in-repo patches and path sources), the
cache (sources, outputs, record signatures) and the lockfile's own
consistency (each key recomputed from its pinned inputs), and lists the full
input tree with what is weakly pinned, unsigned or missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..recipes.keys import Sha256, built_on, is_sha256
from ..remote.signing import PublicKey, signature_finding
from ..store.store import Store, file_sha256, sandboxed
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


def audit(lock: Lock, root: Path, store: Store, trusted: dict[str, PublicKey], graph: Any = None,
          strict: bool = False) -> AuditReport:
    """`graph`: the lock's recipes as loaded from the checkout, to compare every
    keyed input (host tools and dependency outputs included) with the lock.
    `strict`: a record that no trusted key signed is a mismatch, not a flag."""
    report = AuditReport()
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
            add(f"recipe file {e['recipe']}: sha256 {e['recipe_sha256'][:12]}… → {file_sha256(recipe_path)[:12]}…",
                True)
        recomputed = pinned_key(name, e)
        if e["key"] and recomputed and recomputed != e["key"]:
            add(f"key {e['key'][:12]}… does not follow from the pinned inputs ({recomputed[:12]}…)", True)
        for i, p in enumerate(e["patches"]):
            if p["origin"] == "file" and not (root / p["file"]).is_file():
                add(f"patches[{i}] ({p['file']}): missing", True)
            elif p["origin"] == "source" and not p["sha256"]:
                add(f"patches[{i}] ({p['source']}:{p['path']}): pinned only by the git commit of {p['source']}",
                    False)
        if built_on(e.get("environment"), bool(e.get("bootstrap"))) == "host":
            add("built on host tools: its key holds this machine's tool fingerprints, not a pinned environment",
                False)
        absent_debs = [s for s in e["sources"] if s["kind"] == "deb"
                       and store.exists() and store.verify_blob("sources", s["sha256"]) is None]
        if absent_debs:
            add(f"{len(absent_debs)} of {sum(s['kind'] == 'deb' for s in e['sources'])} Debian packages "
                "not in the cache", False)
        for i, s in enumerate(e["sources"]):
            if s["kind"] == "deb":
                continue  # counted above
            if s["kind"] == "path":
                if not (root / s["path"]).exists():
                    add(f"sources[{i}] ({s['path']}): missing", True)
            elif s["kind"] == "url":
                if store.exists() and store.verify_blob("sources", s["sha256"]) is None:
                    add(f"sources[{i}] ({s['url']}): not in the cache", False)
            else:
                if not s.get("tree_sha256"):
                    add(f"sources[{i}] ({s['url']} @ {s['rev'][:12]}): pinned only by a git commit "
                        "(tree sha256 not yet recorded)", False)
                elif store.exists() and store.verify_blob("sources", s["tree_sha256"]) is None:
                    add(f"sources[{i}] ({s['url']} @ {s['rev'][:12]}): tree not in the cache", False)
        _audit_output(name, e, store, trusted, add, strict)
        report.tree[name] = _tree_entry(e)
    return report


def _audit_output(name: str, e: dict[str, Any], store: Store, trusted: dict[str, PublicKey], add: Any,
                  strict: bool) -> None:
    if not e["output_id"]:
        add("not built when locked (no output id)", False)
        return
    record = store.read_record(Sha256(e["key"])) if store.exists() and is_sha256(e["key"]) else None
    if record is None:
        add(f"output {e['output_id'][:12]}…: not in the cache", False)
        return
    if record["output_id"] != e["output_id"]:
        add(f"output {e['output_id'][:12]}… → {record['output_id'][:12]}… (the cache built it differently)", True)
        return
    if not store.has("cas", record["blob"]["sha256"]):
        add(f"output {e['output_id'][:12]}…: record here, bytes not in the cache", False)
    if not sandboxed(record):
        add(f"output {e['output_id'][:12]}…: built without a sandbox (--no-sandbox)", strict)
    finding = signature_finding(record, trusted, f"output {e['output_id'][:12]}…")
    if finding is not None:
        unsigned = "not signed" in finding or "untrusted" in finding
        add(finding, strict or not unsigned)


def _tree_entry(e: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": e["version"], "license": e["license"], "recipe": e["recipe"], "key": e["key"],
        "output_id": e["output_id"], "depends": e["depends"],
        "sources": [{k: v for k, v in s.items() if k in ("kind", "url", "mirrors", "sha256", "rev", "tree_sha256",
                                                          "path", "package", "version", "arch")}
                    for s in e["sources"]],
        "built_on": built_on(e.get("environment"), bool(e.get("bootstrap"))),
        "patches": [{k: v for k, v in p.items() if k in ("origin", "file", "url", "source", "path", "sha256")}
                    for p in e["patches"]],
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
