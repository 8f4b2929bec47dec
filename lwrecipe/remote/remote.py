"""Moving entries between the local store and remote caches (backends/: a
directory, an HTTP(S) server with the Bazel HTTP cache layout, a REAPI server).

Blobs are always checked against their sha256 by the backend that downloads
them; build records are accepted only when
they name the key asked for and a trusted key signed them. Uploads go blobs
first, record last, so a remote never holds a record without its outputs.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import faults
from ..core.digests import Sha256, canonical_json, is_sha256
from ..core.documents import parse_json
from ..core.errors import DocumentError, IntegrityError, LwrecipeError, RemoteError, UsageError
from ..core.record import LIMIT as DOCUMENT_LIMIT  # records, provenance, names: a few KiB each
from ..core.record import BuildRecord, Signature
from ..inputs.fetch import NullReporter, Reporter
from ..recipes.schema import is_name
from ..store.store import Store
from . import provenance, shapes
from .backends.base import Backend
from .backends.opening import open_backend
from .config import Settings
from .signing import PublicKey, SecretKey, cosign, cosignature_name, merge_signatures, sign, signed_by, valid_signers
from .trust import SIGNATURE_LIMIT, agree, cosigns, enough_signers, parse_cosignature, parse_record

RECENT_KEYS = 20  # how many of a recipe's keys names/<recipe> keeps, newest first
LOG_LIMIT = 1 << 30  # a compressed build log


@dataclass
class Remotes:
    """The configured remotes, opened, plus what moving entries needs."""

    store: Store
    settings: Settings
    backends: list[Backend]
    verify_signatures: bool = True
    reporter: Reporter = field(default_factory=NullReporter)
    _down: set[str] = field(default_factory=set)  # remotes that could not be reached in this run

    @classmethod
    def open(
        cls,
        store: Store,
        settings: Settings,
        verify_signatures: bool = True,
        reporter: Reporter | None = None,
        offline: bool = False,
    ) -> Remotes:
        specs = [s for s in settings.remotes if not (offline and not s.url.startswith("file://"))]
        return cls(store, settings, [open_backend(s) for s in specs], verify_signatures, reporter or NullReporter())

    def close(self) -> None:
        for backend in self.backends:
            backend.close()

    def __enter__(self) -> Remotes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def backend(self, name_or_url: str) -> Backend:
        for b in self.backends:
            if name_or_url in (b.spec.name, b.spec.url):
                return b
        raise UsageError(f"remote {name_or_url!r} is not configured")

    def record(self, backend: Backend, key: Sha256, min_signers: int | None = None) -> BuildRecord | None:
        """The remote's record for `key`, checked; None when it has none. Signed by
        at least min_signers (default: the remote's setting) distinct trusted keys,
        counting co-signatures kept beside it (asked for only when the record's own
        signatures fall short); the record comes back with those co-signatures
        among its signatures."""
        where = f"{backend.spec.name}: ac/{key[:12]}"
        data = backend.read_small("ac", key, DOCUMENT_LIMIT)
        if data is None:
            return None
        record = parse_record(data, key, where)
        if not self.verify_signatures:
            return record
        trusted = self.settings.trust_for(backend.spec)
        need = min_signers or self.settings.signers_for(backend.spec)
        signers = valid_signers(record, trusted)
        if len(signers) < need:
            extra = self.cosignatures(backend, key, record, trusted, signers)
            if extra:
                record = record.with_signatures(merge_signatures(record.signatures, extra))
        enough_signers(record, trusted, need, where)
        return record

    def cosignatures(
        self,
        backend: Backend,
        key: Sha256,
        record: BuildRecord,
        trusted: dict[str, PublicKey],
        already: Collection[str] = (),
    ) -> list[Signature]:
        """The valid co-signatures of `record` the remote keeps under sig/<key>/, one
        per trusted key not among `already`; a missing, malformed or invalid one counts
        for nothing."""
        found = []
        for public in trusted.values():
            if public.name in already:
                continue
            name = cosignature_name(key, public)
            data = backend.read_small("sig", name, SIGNATURE_LIMIT)
            entry = parse_cosignature(data, f"{backend.spec.name}: sig/{name}") if data else None
            if entry is not None and cosigns(record, entry, public):
                found.append(entry)
        return found

    def find(self, key: Sha256, warn: Any = None) -> tuple[BuildRecord, Backend] | None:
        """The first remote (in order) holding a usable record for `key`. Refused
        records are reported through `warn` and skipped; a remote that cannot be
        reached is reported once and not asked again by this run."""
        from concurrent.futures import ThreadPoolExecutor

        def ask(backend: Backend) -> BuildRecord | None:
            try:
                return self.record(backend, key)
            except RemoteError as exc:
                self._down.add(backend.spec.url)
                if warn is not None:
                    warn(f"{exc}; not asked again in this run")
            except LwrecipeError as exc:
                if warn is not None:
                    warn(str(exc))
            return None

        asked = [b for b in self.backends if b.spec.url not in self._down]
        if not asked:
            return None
        with ThreadPoolExecutor(len(asked)) as pool:
            answers = list(pool.map(ask, asked))
        for record, backend in zip(answers, asked, strict=True):
            if record is not None:
                return record, backend
        return None

    def materialise(self, record: BuildRecord, backend: Backend) -> BuildRecord:
        """Download a checked record's blobs (verified by sha256), then store the record."""
        for blob in (record.blob.sha256, record.log):
            self._fetch_blob(record, backend, blob)
        key = record.key
        self._pull_provenance(backend, key, record)
        self.store.put_record(record)
        self.store.mark_pulled(key, backend.spec.url)
        return record

    def _pull_provenance(self, backend: Backend, key: Sha256, record: BuildRecord) -> None:
        """The record's provenance, when the remote has one: kept when it is about this
        record's output and a trusted key signed it (unless signatures are not
        checked); otherwise left behind with a warning, as the record is not
        refused for it."""
        where = f"{backend.spec.name}: prov/{key[:12]}"
        data = backend.read_small("prov", key, DOCUMENT_LIMIT)
        if data is None:
            return
        trusted = self.settings.trust_for(backend.spec) if self.verify_signatures else None
        try:
            self.store.put_provenance(key, provenance.read_envelope(data, record, trusted, where))
        except IntegrityError as exc:
            self.reporter.end(f"{record.name}: provenance", False, str(exc))

    def fetch_blob(self, record: BuildRecord, backend: Backend) -> None:
        """Only a record's output blob, verified by its sha256 (the record is not stored)."""
        self._fetch_blob(record, backend, record.blob.sha256)

    def _fetch_blob(self, record: BuildRecord, backend: Backend, blob: str) -> None:
        if self.store.has("cas", blob):
            return
        size = record.blob.size if blob == record.blob.sha256 else None
        max_size = size if isinstance(size, int) else LOG_LIMIT
        backend.download(self.store, Sha256(blob), size, max_size, label=f"{record.name}: pull", reporter=self.reporter)

    def pull(self, backend: Backend, key: Sha256) -> BuildRecord | None:
        record = self.record(backend, key)
        return None if record is None else self.materialise(record, backend)

    def push(self, backend: Backend, key: Sha256, secret: SecretKey | None) -> bool:
        """Upload a local record and its blobs; False when the remote already had it."""
        record = self.store.read_record(key)
        if record is None:
            raise UsageError(f"ac/{key[:12]}: not in the local cache")
        if not record.sandboxed:
            raise UsageError(
                f"{record.name}: built without a sandbox (--no-sandbox); such "
                "outputs are never shared (rebuild it where bubblewrap runs)"
            )
        # Our key signs only what was built here: a record pulled from a remote is
        # passed on with the signatures it came with, and co-signed by nobody here
        # until a build here reproduces it (build --check).
        if self.store.pulled_from(key) is not None:
            secret = None
        if secret is not None and not signed_by(record, secret.public()):
            record = sign(record, secret)
            self.store.put_record(record)
        if backend.exists("ac", key):
            return self._cosign(backend, key, record, secret)
        for blob in (record.blob.sha256, record.log):
            path = self.store.verify_blob("cas", blob)
            if path is None:
                raise IntegrityError(f"cas/{blob[:12]}: missing or corrupt in the local cache; not pushed")
            if not backend.exists("cas", blob, path.stat().st_size):
                backend.upload("cas", blob, path, self.reporter)
        faults.point("push-record")
        with _temp_file(self.store, record.to_json()) as path:
            backend.upload("ac", key, path, self.reporter)
        # A remote collection (remote/gc.py) may have removed a blob this push found
        # present and did not send: the record must not stay without it.
        for blob in (record.blob.sha256, record.log):
            if not backend.exists("cas", blob, self.store.path("cas", blob).stat().st_size):
                path = self.store.verify_blob("cas", blob)
                if path is None:
                    raise IntegrityError(f"cas/{blob[:12]}: missing or corrupt in the local cache; not pushed")
                backend.upload("cas", blob, path, self.reporter)
        # After the record: provenance without its record would be a collection's orphan.
        self._push_provenance(backend, key, record, secret)
        self._index(backend, record)
        return True

    def _push_provenance(self, backend: Backend, key: Sha256, record: BuildRecord, secret: SecretKey | None) -> None:
        """The record's provenance goes up after the record (prov/<key>), signed by
        this key when it was built here: one made before a key was configured, or
        by a key since regenerated, gets this key's signature added."""
        data = self.store.read_provenance(key)
        if data is None:
            return
        envelope = provenance.read_envelope(data, record, None, f"provenance/{key[:12]}")
        if secret is not None and not provenance.signed_by_key(envelope, secret.public()):
            envelope = provenance.add_signature(envelope, secret)
            self.store.put_provenance(key, envelope)
        with _temp_file(self.store, canonical_json(envelope)) as path:
            backend.upload("prov", key, path, self.reporter)

    def _cosign(self, backend: Backend, key: Sha256, record: BuildRecord, secret: SecretKey | None) -> bool:
        """The remote has a record for `key`. When it names the output this store
        holds and our key has not signed it, add our signature beside it as
        sig/<key>/<our public key's sha256>: an object only this signer writes, so
        concurrent co-signers never drop each other's signatures and the record
        itself is never rewritten. Another output for the same key is refused
        (BuildersDisagree). True when a co-signature was written."""
        where = f"{backend.spec.name}: ac/{key[:12]}"
        data = backend.read_small("ac", key, DOCUMENT_LIMIT)
        theirs = parse_record(data, key, where) if data is not None else None
        if theirs is None:
            return False
        agree(theirs, record, where, backend.spec.name)
        if secret is None or signed_by(theirs, secret.public()):
            return False
        name = cosignature_name(key, secret.public())
        if backend.exists("sig", name):
            return False
        with _temp_file(self.store, cosign(theirs, secret).to_json()) as path:
            backend.upload("sig", name, path, self.reporter)
        return True

    def recent_keys(self, backend: Backend, name: str) -> list[Sha256]:
        """The build keys the remote holds records for under the recipe name `name`,
        newest push first, from its names/<name> index (empty when it has none)."""
        return [Sha256(e["key"]) for e in self._recent(backend, name)]

    def _recent(self, backend: Backend, name: str) -> list[dict[str, Any]]:
        data = backend.read_small("names", name, DOCUMENT_LIMIT) if is_name(name) else None
        try:
            document = parse_json(data, f"{backend.spec.name}: names/{name}", DOCUMENT_LIMIT) if data else None
        except DocumentError:
            return []  # advisory: a broken index only means no keys to start from
        return [e for e in shapes.names_entries(document) if is_sha256(e["key"])]

    def _index(self, backend: Backend, record: BuildRecord) -> None:
        """Put the record's key first in names/<recipe>: what `why --remote` starts
        from. Advisory, and rewritten whole: a push racing this one may drop its
        key from the index, never from the cache."""
        name = record.name
        if not is_name(name):
            return
        entries = [
            {"key": record.key, "output_id": record.output_id, "version": record.version or ""},
            *(e for e in self._recent(backend, name) if e["key"] != record.key),
        ][:RECENT_KEYS]
        with _temp_file(self.store, canonical_json({"name": name, "keys": entries})) as path:
            backend.upload("names", name, path, self.reporter)


@contextlib.contextmanager
def _temp_file(store: Store, data: bytes) -> Iterator[Path]:
    fd, name = tempfile.mkstemp(dir=store.ensure().root / "tmp", prefix="push-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)
