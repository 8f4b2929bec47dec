"""What `lwrecipe show` says about one planned recipe: a plain document and its text form."""

from __future__ import annotations

from typing import Any

from ..build.plan import Planned
from ..recipes.schema import DebSource, FilePatch, GitSource, PathSource, SourcePatch, UrlPatch, UrlSource


def describe(item: Planned) -> dict[str, Any]:
    recipe, doc = item.recipe, item.recipe.doc
    sources: list[dict[str, Any]] = []
    for src in doc.sources:
        entry: dict[str, Any] = {"dest": src.dest, "unpack": src.unpack}
        if src.name:
            entry["name"] = src.name
        if isinstance(src, DebSource):
            entry.update(deb=src.deb, version=src.version, arch=src.arch, url=src.url, sha256=src.sha256)
        elif isinstance(src, UrlSource):
            entry.update(url=src.url, mirrors=list(src.mirrors), sha256=src.sha256, strip=src.strip)
        elif isinstance(src, GitSource):
            entry.update(git=src.git, rev=src.rev, strip=src.strip)
        else:
            assert isinstance(src, PathSource)
            entry.update(path=src.path)
        sources.append(entry)
    patches: list[dict[str, Any]] = []
    for patch, pin in zip(doc.patches, item.inputs.patches if item.inputs else [None] * len(doc.patches), strict=True):
        if isinstance(patch, FilePatch):
            entry = {"file": patch.file}
        elif isinstance(patch, UrlPatch):
            entry = {"url": patch.url, "sha256": patch.sha256}
        else:
            assert isinstance(patch, SourcePatch)
            entry = {"source": patch.source, "path": patch.path}
        if pin is not None and pin.kind == "file":
            entry["sha256"] = pin.ident
        entry["strip"] = patch.strip
        patches.append(entry)
    return {
        "name": recipe.name,
        "version": recipe.version,
        "license": doc.package.license,
        "homepage": doc.package.homepage,
        "description": doc.package.description,
        "recipe": recipe.display,
        "recipe_sha256": recipe.file_sha256,
        "key": item.key,
        "waiting_on": list(item.waiting_on),
        "missing_tools": list(item.missing_tools),
        "sources": sources,
        "patches": patches,
        "depends": list(doc.build.depends),
        "built_on": recipe.built_on,
        "host_tools": {t.name: {"path": str(t.path), "sha256": t.sha256, "version": t.version} for t in item.tools},
        "env": dict(doc.build.env),
        "source_date_epoch": doc.build.source_date_epoch,
        "script": doc.build.script,
    }


def _built_on(what: str) -> str:
    if what == "host":
        return "host tools (fingerprinted into the key: it differs between machines)"
    if what == "own-sources":
        return "its own unpacked sources (a bootstrap: no host tool)"
    return f"the environment {what} (its output id is in the key)"


def render_text(doc: dict[str, Any]) -> str:
    lines = [f"{doc['name']} {doc['version']}  ({doc['license']})", f"  recipe:  {doc['recipe']}"]
    if doc["description"]:
        lines.append(f"  about:   {doc['description']}")
    if doc["key"]:
        lines.append(f"  key:     {doc['key']}")
    elif doc["missing_tools"]:
        lines.append(f"  key:     unknown (missing tool: {', '.join(doc['missing_tools'])})")
    else:
        lines.append(f"  key:     unknown until built: {', '.join(doc['waiting_on'])}")
    lines.append(f"  depends: {', '.join(doc['depends']) or '-'}")
    lines.append(f"  built on: {_built_on(doc['built_on'])}")
    lines.append("  sources:")
    for src in doc["sources"] or [{}]:
        if not src:
            lines.append("    -")
        elif "deb" in src:
            lines.append(f"    deb {src['deb']} {src['version']} {src['arch']}\n      sha256 {src['sha256']}")
        elif "url" in src:
            lines.append(f"    {src['url']}\n      sha256 {src['sha256']}  strip {src['strip']}  dest {src['dest']}")
        elif "git" in src:
            lines.append(
                f"    {src['git']} @ {src['rev']}  dest {src['dest']}" + ("" if src["unpack"] else " (not unpacked)")
            )
        else:
            lines.append(f"    {src['path']} (in repo)  dest {src['dest']}")
    lines.append("  patches:")
    for patch in doc["patches"] or [{}]:
        if not patch:
            lines.append("    -")
        else:
            origin = patch.get("file") or patch.get("url") or f"{patch['source']}:{patch['path']}"
            digest = f"  sha256 {patch['sha256']}" if "sha256" in patch else ""
            lines.append(f"    {origin}  -p{patch['strip']}{digest}")
    lines.append("  host tools:")
    for name, tool in doc["host_tools"].items():
        lines.append(f"    {name:<12} {tool['path']}  {tool['version']}")
    for name in doc["missing_tools"]:
        lines.append(f"    {name:<12} MISSING")
    if doc["env"]:
        lines.append("  env:")
        lines += [f"    {k}={v}" for k, v in doc["env"].items()]
    lines.append(f"  SOURCE_DATE_EPOCH: {doc['source_date_epoch']}")
    lines.append("  script:")
    lines += ["    " + line for line in doc["script"].rstrip("\n").splitlines()]
    return "\n".join(lines)
