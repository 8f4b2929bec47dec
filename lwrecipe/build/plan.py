"""Pinning a graph's recipes to key inputs and build keys: what is planned.

Reads in-repo files (path sources, file patches) and fingerprints host tools;
everything else comes from the recipe. A recipe's key needs the output ids of
its dependencies, so it is known only once those are built or cached.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core.digests import Sha256, sha256_bytes
from ..inputs.hosttools import HostTool, fingerprint, target_platform
from ..recipes.graph import Graph
from ..recipes.keys import KEY_FORMAT, KeyInputs, PatchPin, SourcePin, build_key, document_key, root_fields
from ..recipes.recipe import Recipe
from ..recipes.schema import DebSource, FilePatch, GitSource, PathSource, SourcePatch, UrlPatch, UrlSource
from ..store.archive import tree_sha256

KEYED_IMPLICIT_TOOLS = ("bash",)
"""Tools every build runs whether or not the recipe lists them (the script's shell)."""


@dataclass(frozen=True)
class Planned:
    """One recipe of a plan: its key when it can be known, or why it cannot."""

    recipe: Recipe
    key: Sha256 | None
    inputs: KeyInputs | None
    tools: tuple[HostTool, ...]
    missing_tools: tuple[str, ...]
    waiting_on: tuple[str, ...]  # dependencies whose output id is not known yet

    @property
    def name(self) -> str:
        return self.recipe.name


def keyed_tool_names(recipe: Recipe) -> list[str]:
    """Declared host tools plus the implicit ones that shape the output; none for a
    recipe built on an environment, whose output id is keyed instead."""
    if recipe.pinned_root:
        return []
    names = list(KEYED_IMPLICIT_TOOLS)
    if recipe.doc.patches:
        names.append("patch")
    names += recipe.doc.build.host_tools
    return list(dict.fromkeys(names))


def path_source_sha256(root: Path, rel: str, mtime: int) -> Sha256:
    """A file's sha256, or a directory's canonical archive sha256."""
    target = root / rel
    if target.is_dir():
        return tree_sha256(target, mtime)
    return sha256_bytes(target.read_bytes())


def source_pins(recipe: Recipe) -> tuple[SourcePin, ...]:
    pins = []
    epoch = recipe.doc.build.source_date_epoch
    for src in recipe.doc.sources:
        if isinstance(src, UrlSource):
            pins.append(SourcePin("url", src.sha256, src.strip, src.dest, src.unpack))
        elif isinstance(src, DebSource):
            pins.append(SourcePin("deb", src.sha256, 0, src.dest, True))
        elif isinstance(src, GitSource):
            pins.append(SourcePin("git", src.rev, src.strip, src.dest, src.unpack))
        else:
            assert isinstance(src, PathSource)
            pins.append(SourcePin("path", path_source_sha256(recipe.root, src.path, epoch), 0, src.dest, src.unpack))
    return tuple(pins)


def patch_pins(recipe: Recipe) -> tuple[PatchPin, ...]:
    pins = []
    for patch in recipe.doc.patches:
        if isinstance(patch, FilePatch):
            pins.append(PatchPin("file", sha256_bytes((recipe.root / patch.file).read_bytes()), patch.strip))
        elif isinstance(patch, UrlPatch):
            pins.append(PatchPin("url", patch.sha256, patch.strip))
        else:
            assert isinstance(patch, SourcePatch)
            pins.append(PatchPin("source", f"{patch.source}:{patch.path}", patch.strip))
    return tuple(pins)


def plan_recipe(recipe: Recipe, dep_outputs: dict[str, Sha256 | None]) -> Planned:
    found: list[HostTool] = []
    missing: list[str] = []
    for name in keyed_tool_names(recipe):
        tool = fingerprint(name)
        (found.append(tool) if tool else missing.append(name))
    waiting = tuple(d for d in recipe.depends if dep_outputs.get(d) is None)
    inputs = None
    if not missing and not waiting:
        build = recipe.doc.build
        inputs = KeyInputs(
            name=recipe.name,
            version=recipe.version,
            sources=source_pins(recipe),
            patches=patch_pins(recipe),
            script=build.script,
            env=tuple(sorted(build.env.items())),
            tools=tuple(t.pin() for t in found),
            platform=target_platform(),
            source_date_epoch=build.source_date_epoch,
            deps=tuple(sorted((d, out) for d in recipe.depends if (out := dep_outputs.get(d)) is not None)),
            environment=recipe.environment,
            bootstrap=recipe.doc.build.bootstrap,
        )
    return Planned(
        recipe=recipe,
        key=build_key(inputs) if inputs else None,
        inputs=inputs,
        tools=tuple(found),
        missing_tools=tuple(missing),
        waiting_on=waiting,
    )


def document_of(recipe: Recipe, dep_outputs: dict[str, Sha256 | None]) -> dict[str, object]:
    """The key document as far as it can be known now: a missing host tool has an
    empty fingerprint and an unknown dependency output reads "?". Complete, it
    equals plan_recipe(...).inputs.document()."""
    tools = {}
    for name in keyed_tool_names(recipe):
        tool = fingerprint(name)
        tools[name] = tool.pin().document() if tool else {"sha256": "", "version": ""}
    build = recipe.doc.build
    return {
        "format": KEY_FORMAT,
        "name": recipe.name,
        "version": recipe.version,
        "sources": [s.document() for s in source_pins(recipe)],
        "patches": [p.document() for p in patch_pins(recipe)],
        "script": build.script,
        "env": dict(sorted(build.env.items())),
        "host_tools": tools,
        "platform": target_platform(),
        "source_date_epoch": build.source_date_epoch,
        "deps": {d: dep_outputs.get(d) or "?" for d in sorted(recipe.depends)},
        **root_fields(recipe.environment, build.bootstrap),
    }


def key_if_complete(document: dict[str, object]) -> Sha256 | None:
    """The key of a document_of() result, or None while a dependency output is
    unknown or a host tool is missing."""
    deps, tools = document["deps"], document["host_tools"]
    assert isinstance(deps, dict) and isinstance(tools, dict)  # as document_of() builds them
    if "?" in deps.values() or not all(t["sha256"] for t in tools.values()):
        return None
    return document_key(document)


OutputLookup = Callable[[Sha256], "Sha256 | None"]


def plan_graph(graph: Graph, output_of: OutputLookup, names: list[str] | None = None) -> list[Planned]:
    """Plan `names` (default: the targets' closure) in build order. `output_of` maps a
    build key to the output id the store holds for it, if any."""
    outputs: dict[str, Sha256 | None] = {}
    planned: list[Planned] = []
    for name in names or graph.closure(graph.targets):
        recipe = graph.recipes[name]
        item = plan_recipe(recipe, {d: outputs.get(d) for d in recipe.depends})
        outputs[name] = output_of(item.key) if item.key else None
        planned.append(item)
    return planned
