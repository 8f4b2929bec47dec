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
from datetime import datetime, timezone
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
    return e["output_id"] or e["key"] or e["recipe_sha256"]


def spdx_json(target: str, entries: dict[str, dict[str, Any]]) -> str:
    from spdx_tools.common.spdx_licensing import spdx_licensing
    from spdx_tools.spdx.jsonschema.document_converter import DocumentConverter
    from spdx_tools.spdx.model import (Actor, ActorType, Checksum, ChecksumAlgorithm, CreationInfo, Document, Package,
                                       Relationship, RelationshipType, SpdxNoAssertion)
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    created = datetime.fromtimestamp(entries[target]["source_date_epoch"], timezone.utc)
    info = CreationInfo("SPDX-2.3", "SPDXRef-DOCUMENT", f"{target}-{entries[target]['version']}",
                        f"{NAMESPACE}/{target}/{_identity(target, entries)}",
                        [Actor(ActorType.TOOL, f"lwrecipe-{__version__}")], created)
    packages, relationships = [], [Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES,
                                                f"SPDXRef-Recipe-{target}")]
    for name, e in sorted(entries.items()):
        rid = f"SPDXRef-Recipe-{name}"
        packages.append(Package(
            rid, name, _download(e) or SpdxNoAssertion(), version=e["version"], files_analyzed=False,
            license_declared=spdx_licensing.parse(e["license"]), license_concluded=SpdxNoAssertion(),
            copyright_text=SpdxNoAssertion(),
            comment=f"lwrecipe build key {e['key'] or '(unknown)'}; output id {e['output_id'] or '(not built)'}"))
        for dep in e["depends"]:
            relationships.append(Relationship(rid, RelationshipType.DEPENDS_ON, f"SPDXRef-Recipe-{dep}"))
        for i, s in enumerate(e["sources"]):
            sid = f"SPDXRef-Source-{name}-{i}"
            if s["kind"] == "url":
                pkg = Package(sid, _basename(s["url"]), s["url"], version=e["version"], files_analyzed=False,
                              checksums=[Checksum(ChecksumAlgorithm.SHA256, s["sha256"])])
            elif s["kind"] == "deb":
                pkg = Package(sid, s["package"], s["url"], version=s["version"], files_analyzed=False,
                              supplier=Actor(ActorType.ORGANIZATION, "Debian"),
                              checksums=[Checksum(ChecksumAlgorithm.SHA256, s["sha256"])],
                              comment=f"Debian binary package ({s['arch']}), unpacked without maintainer scripts")
            elif s["kind"] == "git":
                checksums = ([Checksum(ChecksumAlgorithm.SHA256, s["tree_sha256"])] if s.get("tree_sha256") else [])
                pkg = Package(sid, _basename(s["url"]), f"git+{s['url']}@{s['rev']}", version=s["rev"],
                              files_analyzed=False, checksums=checksums,
                              comment="pinned by git commit" + ("; checksum of lwrecipe's canonical tree archive"
                                                                if checksums else ""))
            else:
                pkg = Package(sid, s["path"], SpdxNoAssertion(), files_analyzed=False,
                              checksums=[Checksum(ChecksumAlgorithm.SHA256, s["sha256"])],
                              comment="in the lwrecipe repository")
            packages.append(pkg)
            relationships.append(Relationship(rid, RelationshipType.GENERATED_FROM, sid))
        for i, p in enumerate(e["patches"]):
            pid = f"SPDXRef-Patch-{name}-{i}"
            origin = p.get("file") or p.get("url") or f"{p['source']}:{p['path']}"
            checksums = [Checksum(ChecksumAlgorithm.SHA256, p["sha256"])] if p["sha256"] else []
            packages.append(Package(pid, _basename(origin), p.get("url") or SpdxNoAssertion(), files_analyzed=False,
                                    checksums=checksums, comment=f"patch {origin}, applied with -p{p['strip']}"))
            relationships.append(Relationship(pid, RelationshipType.PATCH_APPLIED, rid))
    document = Document(info, packages=packages, relationships=relationships)
    problems = validate_full_spdx_document(document)
    if problems:
        raise ValueError("; ".join(p.validation_message for p in problems))
    return json.dumps(DocumentConverter().convert(document), indent=2, sort_keys=True) + "\n"


def cyclonedx_json(target: str, entries: dict[str, dict[str, Any]]) -> str:
    from cyclonedx.model import ExternalReference, ExternalReferenceType, HashAlgorithm, HashType, Property, XsUri
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.license import LicenseExpression
    from cyclonedx.output.json import JsonV1Dot5

    created = datetime.fromtimestamp(entries[target]["source_date_epoch"], timezone.utc)
    components: dict[str, Component] = {}
    sources: dict[str, list[Component]] = {}
    for name, e in sorted(entries.items()):
        props = [Property(name="lwrecipe:key", value=e["key"] or "(unknown)"),
                 Property(name="lwrecipe:output_id", value=e["output_id"] or "(not built)"),
                 Property(name="lwrecipe:recipe_sha256", value=e["recipe_sha256"])]
        for i, p in enumerate(e["patches"]):
            origin = p.get("file") or p.get("url") or f"{p['source']}:{p['path']}"
            props.append(Property(name=f"lwrecipe:patch:{i}", value=f"{origin} sha256:{p['sha256'] or '(by commit)'}"))
        components[name] = Component(name=name, version=e["version"], bom_ref=f"recipe:{name}",
                                     type=ComponentType.APPLICATION if name == target else ComponentType.LIBRARY,
                                     licenses=[LicenseExpression(e["license"])], properties=props)
        sources[name] = []
        for i, s in enumerate(e["sources"]):
            if s["kind"] == "path":
                comp = Component(name=s["path"], bom_ref=f"source:{name}:{i}", type=ComponentType.FILE,
                                 hashes=[HashType(alg=HashAlgorithm.SHA_256, content=s["sha256"])])
            else:
                url = s["url"]
                digest = s["sha256"] if s["kind"] in ("url", "deb") else s.get("tree_sha256", "")
                version = {"url": e["version"], "deb": s.get("version"), "git": s.get("rev")}[s["kind"]]
                comp = Component(name=s["package"] if s["kind"] == "deb" else _basename(url), version=version,
                                 bom_ref=f"source:{name}:{i}", type=ComponentType.LIBRARY,
                                 hashes=[HashType(alg=HashAlgorithm.SHA_256, content=digest)] if digest else [],
                                 external_references=[ExternalReference(
                                     type=ExternalReferenceType.DISTRIBUTION if s["kind"] != "git"
                                     else ExternalReferenceType.VCS, url=XsUri(url))])
            sources[name].append(comp)
    bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"{NAMESPACE}/{target}/{_identity(target, entries)}"),
              metadata=BomMetaData(timestamp=created, component=components[target]))
    for name, comp in components.items():
        if name != target:
            bom.components.add(comp)
        for src in sources[name]:
            bom.components.add(src)
    for name, comp in components.items():
        bom.register_dependency(comp, [components[d] for d in entries[name]["depends"]] + sources[name])
    text = JsonV1Dot5(bom).output_as_string(indent=2)
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    problem = JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)
    if problem is not None:
        raise ValueError(str(problem)[:500])
    return text + "\n"
