"""The build key (DESIGN.md "Keys and identities").

Pure functions over plain values: nothing here reads a file, the network or
the clock. What goes into a key is exactly the fields of `KeyInputs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.digests import Sha256, canonical_json, sha256_bytes

KEY_FORMAT = 1
"""Bumped whenever the shape of the key document changes."""


@dataclass(frozen=True)
class SourcePin:
    """A source as the key sees it: its content identity and where it goes."""

    kind: str  # "url" | "git" | "path"
    ident: str  # sha256 of the bytes, or the git commit id
    strip: int
    dest: str
    unpack: bool

    def document(self) -> dict[str, Any]:
        ident_field = "rev" if self.kind == "git" else "sha256"
        return {
            "kind": self.kind,
            ident_field: self.ident,
            "strip": self.strip,
            "dest": self.dest,
            "unpack": self.unpack,
        }


@dataclass(frozen=True)
class PatchPin:
    """A patch as the key sees it. A patch inside a git source is pinned by that
    source's commit, so its identity is the pair (source name, path)."""

    kind: str  # "file" | "url" | "source"
    ident: str  # sha256, or "<source>:<path>"
    strip: int

    def document(self) -> dict[str, Any]:
        ident_field = "in_source" if self.kind == "source" else "sha256"
        return {"kind": self.kind, ident_field: self.ident, "strip": self.strip}


@dataclass(frozen=True)
class ToolPin:
    """A host tool's fingerprint. Its path is recorded but not keyed: the same
    binary at /bin/make and /usr/bin/make builds the same thing."""

    name: str
    sha256: Sha256
    version: str

    def document(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "version": self.version}


@dataclass(frozen=True)
class KeyInputs:
    name: str
    version: str
    sources: tuple[SourcePin, ...]
    patches: tuple[PatchPin, ...]
    script: str
    env: tuple[tuple[str, str], ...]
    tools: tuple[ToolPin, ...]
    platform: str
    source_date_epoch: int
    deps: tuple[tuple[str, Sha256], ...]  # (dependency name, its output id)
    environment: str | None = None  # the dependency that is the build's root file system
    bootstrap: bool = False  # the root file system is the recipe's own sources

    def document(self) -> dict[str, Any]:
        return {
            "format": KEY_FORMAT,
            "name": self.name,
            "version": self.version,
            "sources": [s.document() for s in self.sources],
            "patches": [p.document() for p in self.patches],
            "script": self.script,
            "env": dict(self.env),
            "host_tools": {t.name: t.document() for t in self.tools},
            "platform": self.platform,
            "source_date_epoch": self.source_date_epoch,
            "deps": dict(self.deps),
            **root_fields(self.environment, self.bootstrap),
        }


def root_fields(environment: str | None, bootstrap: bool) -> dict[str, Any]:
    """What a build runs on, as key documents and lockfile entries hold it: present
    only when set, so keys of recipes on host tools stay what they were before."""
    fields: dict[str, Any] = {}
    if environment:
        fields["environment"] = environment
    if bootstrap:
        fields["bootstrap"] = True
    return fields


def built_on(environment: str | None, bootstrap: bool) -> str:
    """What plan, show and audit say a build runs on: its environment, its own
    sources (a bootstrap), or the host (its tools fingerprinted)."""
    return environment or ("own-sources" if bootstrap else "host")


def document_key(document: dict[str, Any]) -> Sha256:
    """The build key of a key document (KeyInputs.document, or one rebuilt from a lockfile)."""
    return sha256_bytes(canonical_json(document))


def build_key(inputs: KeyInputs) -> Sha256:
    return document_key(inputs.document())
