"""SBOM export of a target's closure: SPDX 2.3 JSON (spdx-tools) and CycloneDX
1.5 JSON (cyclonedx-python-lib), from the same entries the lockfile holds.

Each recipe is a package/component with its declared license, build key and
output id; each upstream source is its own package with its sha256; patches
are packages applied to their recipe (SPDX) or properties (CycloneDX). Times
and identifiers come from the inputs, so the same inputs give the same bytes.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from .. import __version__

NAMESPACE = "https://lwrecipe.invalid/sbom"


def _download(e: dict[str, Any]) -> str | None:
    for s in e["sources"]:
        if s["kind"] == "url":
            return str(s["url"])
        if s["kind"] == "git":
            return f"git+{s['url']}@{s['rev']}"
    return None


def _basename(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1] or url


def _identity(target: str, entries: dict[str, dict[str, Any]]) -> str:
    e = entries[target]
    identity: str = e["output_id"] or e["key"] or e["recipe_sha256"]
    return identity


PROJECT_SUPPLIER = "the lwrecipe project (its recipes and in-repository files)"


def _host_supplier(url: str) -> str:
    """Who supplies what a URL names: Debian for its archive, the owner on a code
    host (github.com/joelseverin), else the host (musl.libc.org)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:  # a lockfile's text: recipes' URLs are checked, a hand-edited lockfile's not
        return url
    host = parts.hostname or url
    if host.endswith("debian.org"):
        return "Debian"
    if host in ("github.com", "gitlab.com", "codeberg.org") and parts.path.strip("/"):
        return f"{host}/{parts.path.strip('/').split('/')[0]}"
    return host


def _source_supplier(s: dict[str, Any]) -> str:
    return PROJECT_SUPPLIER if s["kind"] == "path" else _host_supplier(s["url"])


def _recipe_supplier(e: dict[str, Any]) -> str:
    """A recipe's output is supplied by whoever supplies what it is built from:
    its first downloaded source's supplier, else the project."""
    return next((_source_supplier(s) for s in e["sources"] if s["kind"] != "path"), PROJECT_SUPPLIER)


def _patch_supplier(e: dict[str, Any], p: dict[str, Any]) -> str:
    if p["origin"] == "url":
        return _host_supplier(p["url"])
    if p["origin"] == "source":
        return next((_source_supplier(s) for s in e["sources"] if s.get("name") == p["source"]), PROJECT_SUPPLIER)
    return PROJECT_SUPPLIER


def _tool_supplier(tool: str) -> str:
    from ..inputs.hosttools import DEBIAN_PACKAGES

    package = DEBIAN_PACKAGES.get(tool)
    return f"Debian (package {package}, on the build host)" if package else "the build host"


def _patch_version(e: dict[str, Any], p: dict[str, Any]) -> str:
    if p["sha256"]:
        return f"sha256:{p['sha256'][:16]}"
    rev = next((s["rev"] for s in e["sources"] if s.get("name") == p.get("source") and s["kind"] == "git"), "")
    return rev or e["version"]


def _tool_version(t: dict[str, Any]) -> str:
    return t["version"] or (f"sha256:{t['sha256'][:16]}" if t["sha256"] else "missing when locked")


def _spdx_id(text: str) -> str:
    """A string made fit for an SPDX identifier (letters, digits, '.' and '-')."""
    import re

    return re.sub(r"[^A-Za-z0-9.-]", lambda m: f"-{ord(m.group(0)):x}-", text)


def spdx_json(target: str, entries: dict[str, dict[str, Any]]) -> str:
    from spdx_tools.common.spdx_licensing import spdx_licensing
    from spdx_tools.spdx.jsonschema.document_converter import DocumentConverter
    from spdx_tools.spdx.model.actor import Actor, ActorType
    from spdx_tools.spdx.model.checksum import Checksum, ChecksumAlgorithm
    from spdx_tools.spdx.model.document import CreationInfo, Document
    from spdx_tools.spdx.model.package import Package
    from spdx_tools.spdx.model.relationship import Relationship, RelationshipType
    from spdx_tools.spdx.model.spdx_no_assertion import SpdxNoAssertion
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    created = datetime.fromtimestamp(entries[target]["source_date_epoch"], UTC)
    info = CreationInfo(
        "SPDX-2.3",
        "SPDXRef-DOCUMENT",
        f"{target}-{entries[target]['version']}",
        f"{NAMESPACE}/{target}/{_identity(target, entries)}",
        [Actor(ActorType.TOOL, f"lwrecipe-{__version__}")],
        created,
    )
    packages, relationships = (
        [],
        [Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, f"SPDXRef-Recipe-{target}")],
    )
    for name, e in sorted(entries.items()):
        rid = f"SPDXRef-Recipe-{name}"
        packages.append(
            Package(
                rid,
                name,
                _download(e) or SpdxNoAssertion(),
                version=e["version"],
                files_analyzed=False,
                supplier=Actor(ActorType.ORGANIZATION, _recipe_supplier(e)),
                license_declared=spdx_licensing.parse(e["license"]),
                license_concluded=SpdxNoAssertion(),
                copyright_text=SpdxNoAssertion(),
                comment=f"lwrecipe build key {e['key'] or '(unknown)'}; output id {e['output_id'] or '(not built)'}",
            )
        )
        for dep in e["depends"]:
            relationships.append(Relationship(rid, RelationshipType.DEPENDS_ON, f"SPDXRef-Recipe-{dep}"))
        if e.get("environment"):  # what built it: the environment's root file system
            relationships.append(
                Relationship(f"SPDXRef-Recipe-{e['environment']}", RelationshipType.BUILD_TOOL_OF, rid)
            )
        for tool, t in sorted(e["host_tools"].items()):  # or this machine's tools, by digest
            tid = f"SPDXRef-Tool-{name}-{_spdx_id(tool)}"
            packages.append(
                Package(
                    tid,
                    tool,
                    SpdxNoAssertion(),
                    version=_tool_version(t),
                    files_analyzed=False,
                    supplier=Actor(ActorType.ORGANIZATION, _tool_supplier(tool)),
                    checksums=[Checksum(ChecksumAlgorithm.SHA256, t["sha256"])] if t["sha256"] else [],
                    comment=f"host tool {t['path'] or tool}, fingerprinted into the build key",
                )
            )
            relationships.append(Relationship(tid, RelationshipType.BUILD_TOOL_OF, rid))
        for i, s in enumerate(e["sources"]):
            sid = f"SPDXRef-Source-{name}-{i}"
            supplier = Actor(ActorType.ORGANIZATION, _source_supplier(s))
            if s["kind"] == "url":
                pkg = Package(
                    sid,
                    _basename(s["url"]),
                    s["url"],
                    version=e["version"],
                    files_analyzed=False,
                    supplier=supplier,
                    checksums=[Checksum(ChecksumAlgorithm.SHA256, s["sha256"])],
                )
            elif s["kind"] == "deb":
                pkg = Package(
                    sid,
                    s["package"],
                    s["url"],
                    version=s["version"],
                    files_analyzed=False,
                    supplier=Actor(ActorType.ORGANIZATION, "Debian"),
                    checksums=[Checksum(ChecksumAlgorithm.SHA256, s["sha256"])],
                    comment=f"Debian binary package ({s['arch']}), unpacked without maintainer scripts",
                )
            elif s["kind"] == "git":
                checksums = [Checksum(ChecksumAlgorithm.SHA256, s["tree_sha256"])] if s.get("tree_sha256") else []
                pkg = Package(
                    sid,
                    _basename(s["url"]),
                    f"git+{s['url']}@{s['rev']}",
                    version=s["rev"],
                    files_analyzed=False,
                    checksums=checksums,
                    supplier=supplier,
                    comment="pinned by git commit"
                    + ("; checksum of lwrecipe's canonical tree archive" if checksums else ""),
                )
            else:
                pkg = Package(
                    sid,
                    s["path"],
                    SpdxNoAssertion(),
                    version=f"sha256:{s['sha256'][:16]}",
                    files_analyzed=False,
                    supplier=supplier,
                    checksums=[Checksum(ChecksumAlgorithm.SHA256, s["sha256"])],
                    comment="in the lwrecipe repository",
                )
            packages.append(pkg)
            relationships.append(Relationship(rid, RelationshipType.GENERATED_FROM, sid))
        for i, p in enumerate(e["patches"]):
            pid = f"SPDXRef-Patch-{name}-{i}"
            origin = p.get("file") or p.get("url") or f"{p['source']}:{p['path']}"
            checksums = [Checksum(ChecksumAlgorithm.SHA256, p["sha256"])] if p["sha256"] else []
            packages.append(
                Package(
                    pid,
                    _basename(origin),
                    p.get("url") or SpdxNoAssertion(),
                    version=_patch_version(e, p),
                    files_analyzed=False,
                    supplier=Actor(ActorType.ORGANIZATION, _patch_supplier(e, p)),
                    checksums=checksums,
                    comment=f"patch {origin}, applied with -p{p['strip']}",
                )
            )
            relationships.append(Relationship(pid, RelationshipType.PATCH_APPLIED, rid))
    document = Document(info, packages=packages, relationships=relationships)
    problems = validate_full_spdx_document(document)
    if problems:
        raise ValueError("; ".join(p.validation_message for p in problems))
    converter = DocumentConverter()  # type: ignore[no-untyped-call]  # spdx_tools leaves its __init__ unannotated
    return json.dumps(converter.convert(document), indent=2, sort_keys=True) + "\n"


def cyclonedx_json(target: str, entries: dict[str, dict[str, Any]]) -> str:
    from cyclonedx.model import ExternalReference, ExternalReferenceType, HashAlgorithm, HashType, Property, XsUri
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.contact import OrganizationalEntity
    from cyclonedx.model.license import LicenseExpression
    from cyclonedx.output.json import JsonV1Dot5

    def supplier(name: str) -> OrganizationalEntity:
        return OrganizationalEntity(name=name)

    created = datetime.fromtimestamp(entries[target]["source_date_epoch"], UTC)
    components: dict[str, Component] = {}
    sources: dict[str, list[Component]] = {}
    for name, e in sorted(entries.items()):
        props = [
            Property(name="lwrecipe:key", value=e["key"] or "(unknown)"),
            Property(name="lwrecipe:output_id", value=e["output_id"] or "(not built)"),
            Property(name="lwrecipe:recipe_sha256", value=e["recipe_sha256"]),
        ]
        for i, p in enumerate(e["patches"]):
            origin = p.get("file") or p.get("url") or f"{p['source']}:{p['path']}"
            props.append(Property(name=f"lwrecipe:patch:{i}", value=f"{origin} sha256:{p['sha256'] or '(by commit)'}"))
        components[name] = Component(
            name=name,
            version=e["version"],
            bom_ref=f"recipe:{name}",
            type=ComponentType.APPLICATION if name == target else ComponentType.LIBRARY,
            supplier=supplier(_recipe_supplier(e)),
            licenses=[LicenseExpression(e["license"])],
            properties=props,
        )
        sources[name] = []
        for i, s in enumerate(e["sources"]):
            if s["kind"] == "path":
                comp = Component(
                    name=s["path"],
                    bom_ref=f"source:{name}:{i}",
                    type=ComponentType.FILE,
                    version=f"sha256:{s['sha256'][:16]}",
                    supplier=supplier(PROJECT_SUPPLIER),
                    hashes=[HashType(alg=HashAlgorithm.SHA_256, content=s["sha256"])],
                )
            else:
                url = s["url"]
                digest = s["sha256"] if s["kind"] in ("url", "deb") else s.get("tree_sha256", "")
                version = {"url": e["version"], "deb": s.get("version"), "git": s.get("rev")}[s["kind"]]
                comp = Component(
                    name=s["package"] if s["kind"] == "deb" else _basename(url),
                    version=version,
                    bom_ref=f"source:{name}:{i}",
                    type=ComponentType.LIBRARY,
                    supplier=supplier(_source_supplier(s)),
                    hashes=[HashType(alg=HashAlgorithm.SHA_256, content=digest)] if digest else [],
                    external_references=[
                        ExternalReference(
                            type=ExternalReferenceType.DISTRIBUTION
                            if s["kind"] != "git"
                            else ExternalReferenceType.VCS,
                            url=XsUri(url),
                        )
                    ],
                )
            sources[name].append(comp)
    bom = Bom(
        serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"{NAMESPACE}/{target}/{_identity(target, entries)}"),
        metadata=BomMetaData(timestamp=created, component=components[target]),
    )
    for name, comp in components.items():
        if name != target:
            bom.components.add(comp)
        for src in sources[name]:
            bom.components.add(src)
    for name, comp in components.items():
        bom.register_dependency(comp, [components[d] for d in entries[name]["depends"]] + sources[name])
    doc = json.loads(JsonV1Dot5(bom).output_as_string())
    formulation = [f for f in (_formula(name, e) for name, e in sorted(entries.items())) if f]
    if formulation:  # cyclonedx-python-lib does not model formulation yet
        doc["formulation"] = formulation
    problem = _cyclonedx_problem(doc)
    if problem is not None:
        raise ValueError(problem[:500])
    return json.dumps(doc, indent=2) + "\n"


def _formula(name: str, e: dict[str, Any]) -> dict[str, Any] | None:
    """CycloneDX 1.5 `formulation` of one recipe: what built it. The environment it
    was built on (a component of the BOM, referenced), or each host tool with its
    digest (components of the formula), in one build workflow whose uid is the
    build key."""
    tools = [
        {
            "type": "application",
            "bom-ref": f"tool:{name}:{tool}",
            "name": tool,
            "version": _tool_version(t),
            "supplier": {"name": _tool_supplier(tool)},
            **({"hashes": [{"alg": "SHA-256", "content": t["sha256"]}]} if t["sha256"] else {}),
            "properties": [{"name": "lwrecipe:path", "value": t["path"] or "(missing when locked)"}],
        }
        for tool, t in sorted(e["host_tools"].items())
    ]
    used = [{"ref": f"recipe:{e['environment']}"}] if e.get("environment") else []
    used += [{"ref": tool["bom-ref"]} for tool in tools]
    if not used:
        return None
    workflow = {
        "bom-ref": f"build:{name}",
        "uid": e["key"] or f"recipe:{name}",
        "name": f"build {name}",
        "taskTypes": ["build"],
        "resourceReferences": used,
        "outputs": [{"resource": {"ref": f"recipe:{name}"}}],
    }
    return {"bom-ref": f"formula:{name}", **({"components": tools} if tools else {}), "workflows": [workflow]}


_VALIDATOR: Any = None


def _cyclonedx_problem(doc: dict[str, Any]) -> str | None:
    """The first way `doc` breaks the CycloneDX 1.5 JSON schema (the strict one, that
    allows no unknown property), or None. Structure only: string formats (IRIs,
    dates) are not checked here, which costs seconds on a real graph; the tests
    check them with an independent validator."""
    global _VALIDATOR
    if _VALIDATOR is None:
        import sys
        from importlib.resources import files

        # jsonschema compiles 38 grammars (2.4 s) for rfc3987-syntax's IRI format
        # checks at import when that package is installed; they are not run here.
        hidden = "jsonschema" not in sys.modules and "rfc3987_syntax" not in sys.modules
        if hidden:
            sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # None blocks the import (importlib docs); the stub wants modules
        try:
            from jsonschema.validators import Draft7Validator
        finally:
            if hidden:
                del sys.modules["rfc3987_syntax"]
        from referencing import Registry
        from referencing.jsonschema import DRAFT7

        res = files("cyclonedx.schema") / "_res"
        prefix = "http://cyclonedx.org/schema/"
        registry = Registry().with_resources(
            (prefix + name, DRAFT7.create_resource(json.loads((res / name).read_text())))
            for name in (
                "spdx.SNAPSHOT.schema.json",
                "jsf-0.82.SNAPSHOT.schema.json",
                "cryptography-defs.SNAPSHOT.schema.json",
            )
            if (res / name).is_file()
        )
        _VALIDATOR = Draft7Validator(json.loads((res / "bom-1.5.SNAPSHOT.schema.json").read_text()), registry=registry)
    error = next(iter(_VALIDATOR.iter_errors(doc)), None)
    return None if error is None else f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
