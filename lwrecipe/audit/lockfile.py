"""The release lockfile (`lockfile.toml`, DESIGN.md "Lockfile"): building its
entries from a planned graph, writing it byte-stably, reading it back, and
turning an entry into the key document it pins.

An entry holds every keyed input (so a build key can be recomputed and a
difference named input by input) plus what an auditor needs besides: URLs,
mirrors, patch origins, the recipe file's sha256, first-use pins of git trees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..build.plan import Planned, keyed_tool_names, patch_pins, source_pins
from ..core.digests import is_sha256, sha256_bytes
from ..core.documents import LOCKFILE_LIMIT, read_toml_file
from ..core.errors import LwrecipeError, UsageError
from ..inputs.gitsrc import cached_tree, read_member
from ..inputs.hosttools import HostTool, target_platform
from ..recipes.graph import Graph, load_graph
from ..recipes.keys import KEY_FORMAT, document_key, root_fields
from ..recipes.recipe import Recipe
from ..recipes.schema import DebSource, FilePatch, GitSource, PathSource, SourcePatch, UrlPatch, UrlSource
from ..store.store import Store

LOCKFILE = "lockfile.toml"
LOCK_FORMAT = 1
HEADER = "# Written by `lwrecipe lock`: the exact inputs of this release. Do not edit by hand.\n"


@dataclass(frozen=True)
class Lock:
    path: Path
    data: dict[str, Any]

    @property
    def recipes(self) -> dict[str, dict[str, Any]]:
        recipes: dict[str, dict[str, Any]] = self.data.get("recipe", {})
        return recipes


def _rel(recipe: Recipe, path: Path) -> str:
    try:
        return path.relative_to(recipe.root).as_posix()
    except ValueError:
        return str(path)


def _tools(item: Planned) -> dict[str, dict[str, str]]:
    found = {t.name: t for t in item.tools}
    out: dict[str, dict[str, str]] = {}
    for name in keyed_tool_names(item.recipe):
        tool: HostTool | None = found.get(name)
        out[name] = (
            {"sha256": tool.sha256, "version": tool.version, "path": str(tool.path)}
            if tool
            else {"sha256": "", "version": "", "path": ""}
        )
    return out


@dataclass(frozen=True)
class FirstUsePins:
    """First-use pins a lockfile already holds: each git commit's tree sha256 and the
    sha256 of each patch read from inside one (by commit and path)."""

    trees: dict[str, str] = field(default_factory=dict)
    patches: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def of(cls, previous: dict[str, Any]) -> FirstUsePins:
        pins = cls()
        for e in previous.values():
            if not isinstance(e, dict):
                continue
            revs = {s.get("name"): s.get("rev") for s in e.get("sources", []) if s.get("kind") == "git"}
            for s in e.get("sources", []):
                if s.get("kind") == "git" and is_sha256(s.get("tree_sha256", "")):
                    pins.trees[s["rev"]] = s["tree_sha256"]
            for p in e.get("patches", []):
                rev = revs.get(p.get("source"))
                if p.get("origin") == "source" and rev and is_sha256(p.get("sha256", "")):
                    pins.patches[(rev, p["path"])] = p["sha256"]
        return pins


def entry(
    item: Planned, store: Store, dep_outputs: dict[str, str], output_id: str | None, pins: FirstUsePins = FirstUsePins()
) -> dict[str, Any]:
    """The lockfile entry of one planned recipe; `store` supplies first-use pins, and
    `pins` (the lockfile's own) those of trees the store does not hold."""
    recipe, doc = item.recipe, item.recipe.doc
    sources = []
    for src, pin in zip(doc.sources, source_pins(recipe), strict=True):
        if isinstance(src, DebSource):
            s: dict[str, Any] = {
                "kind": "deb",
                "package": src.deb,
                "version": src.version,
                "arch": src.arch,
                "url": src.url,
                "mirrors": list(src.mirrors),
                "sha256": src.sha256,
            }
        elif isinstance(src, UrlSource):
            s = {"kind": "url", "url": src.url, "mirrors": list(src.mirrors), "sha256": src.sha256}
        elif isinstance(src, GitSource):
            tree = cached_tree(store, src.rev) if store.exists() else None
            s = {"kind": "git", "url": src.git, "rev": src.rev, "tree_sha256": tree or pins.trees.get(src.rev, "")}
        else:
            assert isinstance(src, PathSource)
            s = {"kind": "path", "path": src.path, "sha256": pin.ident}
        if src.name:
            s["name"] = src.name
        s.update(strip=pin.strip, dest=pin.dest, unpack=pin.unpack)
        sources.append(s)
    patches = []
    for patch, patch_pin in zip(doc.patches, patch_pins(recipe), strict=True):
        if isinstance(patch, FilePatch):
            p: dict[str, Any] = {"origin": "file", "file": patch.file, "sha256": patch_pin.ident}
        elif isinstance(patch, UrlPatch):
            p = {"origin": "url", "url": patch.url, "sha256": patch.sha256}
        else:
            assert isinstance(patch, SourcePatch)
            p = {
                "origin": "source",
                "source": patch.source,
                "path": patch.path,
                "sha256": _source_patch_sha(recipe, patch, store, pins),
            }
        p["strip"] = patch.strip
        patches.append(p)
    return {
        "version": recipe.version,
        "license": doc.package.license,
        "recipe": _rel(recipe, recipe.path),
        "recipe_sha256": recipe.file_sha256,
        "depends": sorted(recipe.depends),
        "key": item.key or "",
        "output_id": output_id or "",
        "platform": target_platform(),
        "source_date_epoch": doc.build.source_date_epoch,
        "script": doc.build.script,
        "env": dict(sorted(doc.build.env.items())),
        "dep_outputs": {d: dep_outputs.get(d, "") for d in sorted(recipe.depends)},
        "host_tools": _tools(item),
        "sources": sources,
        "patches": patches,
        **root_fields(recipe.environment, recipe.doc.build.bootstrap),
    }


def build_entries(
    graph: Any, store: Store, output_of: Any, pins: FirstUsePins = FirstUsePins()
) -> dict[str, dict[str, Any]]:
    """Entries for the graph's targets and their closure, as this machine and cache
    see them; `output_of(key)` is the output id the cache holds for a key."""
    from ..build.plan import plan_graph

    planned = plan_graph(graph, output_of)
    outputs = {p.name: output_of(p.key) if p.key else None for p in planned}
    return {
        p.name: entry(p, store, {d: outputs[d] or "" for d in p.recipe.depends}, outputs[p.name], pins) for p in planned
    }


def locked_outputs(previous: dict[str, Any], output_of: Any) -> Any:
    """`output_of`, falling back to the output id the lockfile already pins for the
    same key: a lock written where the environment was built stays up to date on a
    machine that has not built it (its own store, when it has the key, still wins)."""
    pinned = {
        e["key"]: e["output_id"]
        for e in previous.values()
        if isinstance(e, dict) and e.get("key") and e.get("output_id")
    }
    return lambda key: output_of(key) or pinned.get(key)


def fetch_first_use_pins(graph: Any, store: Store, mirrors: Any, warn: Any) -> None:
    """Fetch the git sources whose trees are not cached (through `mirrors`), so that
    `lock` can record their tree sha256 and the sha256 of patches inside them;
    failures are warnings."""
    from ..core.errors import LwrecipeError
    from ..inputs.gitsrc import fetch_tree

    for name in graph.closure(graph.targets):
        for src in graph.recipes[name].doc.sources:
            if isinstance(src, GitSource) and not (store.exists() and cached_tree(store, src.rev)):
                try:
                    fetch_tree(store.ensure(), f"{name}: git", src.git, src.rev, mirrors=mirrors)
                except LwrecipeError as exc:
                    warn(f"{exc}; its first-use pins stay empty")


def write(path: Path, text: str) -> None:
    """Replace the lockfile atomically: readers see the old one or the new one."""
    import os

    from ..core import faults

    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    faults.point("lock")
    os.replace(tmp, path)


def _source_patch_sha(recipe: Recipe, patch: SourcePatch, store: Store, pins: FirstUsePins) -> str:
    """A patch inside a git source: pinned by the commit; its own sha256 once the tree
    is here, else the one the lockfile already has for that commit and path."""
    src = recipe.source_named(patch.source)
    if not isinstance(src, GitSource):
        return ""
    tree = cached_tree(store, src.rev) if store.exists() else None
    if tree is None:
        return pins.patches.get((src.rev, patch.path), "")
    data = read_member(store.path("sources", tree), patch.path)
    return sha256_bytes(data) if data is not None else ""


def key_document(name: str, e: dict[str, Any]) -> dict[str, Any]:
    """The key document (keys.KeyInputs.document) an entry pins."""
    sources = []
    for s in e["sources"]:
        ident = ("rev", s["rev"]) if s["kind"] == "git" else ("sha256", s["sha256"])
        sources.append(
            {"kind": s["kind"], ident[0]: ident[1], "strip": s["strip"], "dest": s["dest"], "unpack": s["unpack"]}
        )
    patches = []
    for p in e["patches"]:
        if p["origin"] == "source":
            patches.append({"kind": "source", "in_source": f"{p['source']}:{p['path']}", "strip": p["strip"]})
        else:
            patches.append({"kind": p["origin"], "sha256": p["sha256"], "strip": p["strip"]})
    return {
        "format": KEY_FORMAT,
        "name": name,
        "version": e["version"],
        "sources": sources,
        "patches": patches,
        "script": e["script"],
        "env": dict(e["env"]),
        "host_tools": {t: {"sha256": v["sha256"], "version": v["version"]} for t, v in e["host_tools"].items()},
        "platform": e["platform"],
        "source_date_epoch": e["source_date_epoch"],
        "deps": dict(e["dep_outputs"]),
        **root_fields(e.get("environment"), bool(e.get("bootstrap"))),
    }


def pinned_key(name: str, e: dict[str, Any]) -> str:
    """The key an entry's inputs give; "" while a dependency's output is unknown."""
    if any(not v for v in e["dep_outputs"].values()) or any(not t["sha256"] for t in e["host_tools"].values()):
        return ""
    return document_key(key_document(name, e))


def render(entries: dict[str, dict[str, Any]]) -> str:
    """The lockfile text: sorted recipes, fixed field order, byte-stable."""
    import tomli_w

    doc = {"lockfile": LOCK_FORMAT, "recipe": {name: entries[name] for name in sorted(entries)}}
    return HEADER + tomli_w.dumps(doc, multiline_strings=True)


def read(path: Path) -> Lock:
    """The lockfile at `path`, read with bounds (documents.py) and checked for shape
    (lockmodel.py): every problem is one line naming the file and field, exit 2."""
    from .lockmodel import check

    data = _document(path)
    check(data, str(path))
    return Lock(path, data)


def _document(path: Path) -> dict[str, Any]:
    """The lockfile's TOML, bounded, of this format, its entries not yet checked."""
    try:
        data = read_toml_file(path, LOCKFILE_LIMIT)
    except FileNotFoundError:
        raise UsageError(f"{path}: no lockfile (run `lwrecipe lock` first)") from None
    if data.get("lockfile") != LOCK_FORMAT:
        raise UsageError(f"{path}: lockfile: not a version {LOCK_FORMAT} lockfile")
    if not isinstance(data.get("recipe", {}), dict):
        raise UsageError(f"{path}: recipe: expected a table")
    return data


def drift(lock: Lock, graph: Any, output_of: Any) -> list[Any]:
    """Every keyed input of the graph's recipes that differs from the lock, as
    explain.Change values; `output_of(key)` gives the output id stored for a key.
    A dependency's output is compared where both the lock and the cache know it."""
    from ..build.plan import document_of, key_if_complete
    from .explain import Change, diff_documents

    outputs: dict[str, Any] = {}
    changes: list[Change] = []
    for name in graph.closure(graph.targets):
        recipe = graph.recipes[name]
        e = lock.recipes.get(name)
        if e is None:
            changes.append(Change(name, "recipe", "(not in the lockfile)", recipe.version))
            continue
        doc = document_of(recipe, {d: outputs.get(d) for d in recipe.depends})
        changes += diff_documents(name, key_document(name, e), doc)
        key = key_if_complete(doc)
        outputs[name] = output_of(key) if key else None
    return changes


def pinned_ids(path: Path) -> set[str]:
    """Every build key and output id the lockfile at `path` names. Only those two
    fields are read (each checked), so a lockfile trimmed to them serves `gc`."""
    ids: set[str] = set()
    for name, e in _document(path).get("recipe", {}).items():
        if not isinstance(e, dict):
            raise UsageError(f"{path}: recipe.{name}: expected a table")
        for field_name in ("key", "output_id"):
            value = e.get(field_name, "")
            if not isinstance(value, str):
                raise UsageError(f"{path}: recipe.{name}.{field_name}: expected a string")
            if is_sha256(value):
                ids.add(value)
    return ids


def locked_keys(paths: Iterable[str]) -> set[str]:
    """The build keys the lockfiles at `paths` pin: what `cache gc --remote` keeps
    (a record names the blobs it needs). UsageError for a path that is no file."""
    keys: set[str] = set()
    for path in paths:
        if not Path(path).is_file():
            raise UsageError(f"{path}: no such lockfile")
        keys |= {
            str(e["key"])
            for e in read(Path(path)).recipes.values()
            if isinstance(e, dict) and is_sha256(str(e.get("key", "")))
        }
    return keys


def locked_graph(lock: Lock, root: Path, warn: Callable[[str], None]) -> Graph | None:
    """The lock's recipes as the checkout at `root` has them, or None where they
    cannot be loaded (said through `warn`: their inputs are then not compared)."""
    paths = [str(root / e["recipe"]) for e in lock.recipes.values() if (root / e["recipe"]).is_file()]
    try:
        return load_graph(paths) if paths else None
    except LwrecipeError as exc:
        warn(f"recipes cannot be loaded, inputs not compared: {exc}")
        return None
