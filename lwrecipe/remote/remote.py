"""Remote caches: a directory or an HTTP(S) server with the Bazel HTTP cache
layout (`{base}/cas/<sha256>`, `{base}/ac/<key>`), and moving entries between
one and the local store.

Blobs travel through the same verified, resumable downloader as sources (a
directory remote's are copied by directory.py, which follows no link in it) and
are always checked against their sha256; build records are accepted only when
they name the key asked for and a trusted key signed them. Uploads go blobs
first, record last, so a remote never holds a record without its outputs.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..core import faults
from ..core.digests import Sha256, canonical_json, is_sha256
from ..core.documents import parse_json
from ..core.errors import (
    DocumentError,
    FetchError,
    FetchIntegrityError,
    IntegrityError,
    LwrecipeError,
    RemoteError,
    UsageError,
)
from ..core.record import BuildRecord, Signature
from ..inputs.fetch import Downloader, NullReporter, Reporter, RetryPolicy, Wanted, make_client
from ..store.store import Store
from . import provenance, shapes
from .config import RemoteSpec, Settings
from .directory import DirBackend, Entry
from .signing import PublicKey, SecretKey, cosign, cosignature_name, merge_signatures, sign, signed_by, valid_signers
from .trust import SIGNATURE_LIMIT, agree, cosigns, enough_signers, parse_cosignature, parse_record

if TYPE_CHECKING:
    from ..inputs.web import Client

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._+-]*")  # a recipe name, safe as a file name
RECORD_LIMIT = 4 << 20  # a build record is a few KiB; anything near this is not one
RECENT_KEYS = 20  # how many of a recipe's keys names/<recipe> keeps, newest first
LOG_LIMIT = 1 << 30  # a compressed build log


class Backend(Protocol):
    spec: RemoteSpec

    def exists(self, kind: str, name: str, size: int | None = None) -> bool: ...
    def read_small(self, kind: str, name: str, limit: int) -> bytes | None: ...
    def location(self, kind: str, name: str) -> str: ...
    def upload(self, kind: str, name: str, path: Path, reporter: Reporter) -> None: ...
    def listing(self, kind: str) -> list[Entry]: ...
    def delete(self, kind: str, name: str) -> None: ...
    def close(self) -> None: ...


@dataclass
class HttpBackend:
    """An HTTP cache: GET/HEAD/PUT of {base}/cas/<sha256> and {base}/ac/<key>."""

    spec: RemoteSpec
    client: Client
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Any = time.sleep

    def location(self, kind: str, name: str) -> str:
        return f"{self.spec.url}/{kind}/{name}"

    def _retrying(self, what: str, attempt_once: Any) -> Any:
        from ..inputs.web import HttpError

        attempt = 0
        while True:
            attempt += 1
            try:
                return attempt_once()
            except (HttpError, _Retry) as exc:
                reason = str(exc) or type(exc).__name__
                if not getattr(exc, "retry", True) or attempt >= self.policy.attempts:
                    tries = f" (after {attempt} attempts)" if attempt > 1 else ""
                    raise RemoteError(f"{self.spec.name}: {what}: {reason}{tries}") from None
                self.sleep(self.policy.delay(attempt, getattr(exc, "retry_after", None)))

    def exists(self, kind: str, name: str, size: int | None = None) -> bool:
        def once() -> bool:
            code, headers = self.client.status("HEAD", self.location(kind, name))
            return _status(code, headers, f"HEAD {kind}/{name}") == 200

        return bool(self._retrying(f"HEAD {kind}/{name}", once))

    def read_small(self, kind: str, name: str, limit: int) -> bytes | None:
        def once() -> bytes | None:
            with self.client.request("GET", self.location(kind, name)) as resp:
                if _status(resp.status, resp.headers, f"GET {kind}/{name}") == 404:
                    return None
                data = resp.read(limit)
                if data is None:
                    raise IntegrityError(f"{self.spec.name}: {kind}/{name}: larger than {limit} bytes; refused")
                return data

        return self._retrying(f"GET {kind}/{name}", once)  # type: ignore[no-any-return]

    def upload(self, kind: str, name: str, path: Path, reporter: Reporter) -> None:
        size = path.stat().st_size
        label = f"push {kind}/{name[:12]}"

        def sent(nbytes: int) -> None:
            reporter.advance(label, nbytes)
            faults.point("push")

        def once() -> None:
            reporter.begin(label, name[:12], size)
            code, headers = self.client.status(
                "PUT",
                self.location(kind, name),
                body=path,
                sent=sent,
                headers={"Content-Type": "application/octet-stream"},
            )
            if _status(code, headers, f"PUT {kind}/{name}") not in (200, 201, 204):
                raise RemoteError(f"{self.spec.name}: PUT {kind}/{name}: HTTP {code}")

        self._retrying(f"PUT {kind}/{name}", once)
        reporter.end(label, True, self.spec.name)

    def _propfind(self, path: str) -> list[tuple[str, bool, int, float]]:
        """(name, is a directory, size, mtime) of each member of the collection at
        path, by WebDAV PROPFIND with Depth 1; [] when it does not exist."""
        from email.utils import parsedate_to_datetime
        from urllib.parse import unquote, urlsplit
        from xml.etree import ElementTree

        url = f"{self.spec.url}/{path}/"

        def once() -> bytes | None:
            with self.client.request("PROPFIND", url, headers={"Depth": "1"}) as resp:
                if resp.status == 404:
                    return None
                if resp.status in (405, 501):
                    raise RemoteError(
                        f"{self.spec.name}: cannot list {path}/: the server does not answer WebDAV "
                        "PROPFIND (nginx: the dav-ext module, `dav_ext_methods PROPFIND OPTIONS;`)"
                    )
                if resp.status == 207:
                    data = resp.read(256 << 20)
                    if data is None:
                        raise RemoteError(f"{self.spec.name}: listing of {path}/ larger than 256 MiB")
                    return data
                _status(resp.status, resp.headers, f"PROPFIND {path}/")
                raise RemoteError(f"{self.spec.name}: PROPFIND {path}/: HTTP {resp.status}")

        data = self._retrying(f"PROPFIND {path}/", once)
        if data is None:
            return []
        try:
            tree = ElementTree.fromstring(data)
        except ElementTree.ParseError as exc:
            raise RemoteError(f"{self.spec.name}: PROPFIND {path}/: not a WebDAV answer ({exc})") from None
        own = urlsplit(url).path.rstrip("/")
        members = []
        for response in tree.findall("{DAV:}response"):
            try:
                href = unquote(urlsplit(response.findtext("{DAV:}href", "")).path).rstrip("/")
            except ValueError:  # the server's answer: an href urllib cannot take apart is no member
                continue
            if href == own or not href:
                continue
            prop = response.find("{DAV:}propstat/{DAV:}prop")
            is_dir = prop is not None and prop.find("{DAV:}resourcetype/{DAV:}collection") is not None
            size = int(prop.findtext("{DAV:}getcontentlength", "0") or 0) if prop is not None else 0
            modified = prop.findtext("{DAV:}getlastmodified", "") if prop is not None else ""
            try:
                mtime = parsedate_to_datetime(modified).timestamp()
            except (TypeError, ValueError):
                mtime = 0.0
            members.append((href.rsplit("/", 1)[-1], is_dir, size, mtime))
        return members

    def listing(self, kind: str) -> list[Entry]:
        found = []
        for name, is_dir, size, mtime in self._propfind(kind):
            if kind == "sig" and is_dir:
                found += [
                    Entry(kind, f"{name}/{inner}", s, m) for inner, d, s, m in self._propfind(f"sig/{name}") if not d
                ]
            elif not is_dir:
                found.append(Entry(kind, name, size, mtime))
        return found

    def delete(self, kind: str, name: str) -> None:
        def once() -> None:
            code, headers = self.client.status("DELETE", self.location(kind, name))
            if _status(code, headers, f"DELETE {kind}/{name}") == 201:  # 5xx and the like raise in _status
                raise RemoteError(f"{self.spec.name}: DELETE {kind}/{name}: HTTP {code}")

        self._retrying(f"DELETE {kind}/{name}", once)

    def close(self) -> None:
        self.client.close()


class _Retry(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def _status(code: int, headers: Mapping[str, str], what: str) -> int:
    """200/201/204/404 are answers; 5xx, 408 and 429 are retried; the rest are errors."""
    if code in (200, 201, 204, 404):
        return code
    if code >= 500 or code in (408, 429):
        after = headers.get("Retry-After")
        raise _Retry(f"HTTP {code}", float(after) if after and after.isdigit() else None)
    if code in (401, 403):
        raise RemoteError(f"{what}: HTTP {code} (check the remote's auth_env)")
    raise RemoteError(f"{what}: HTTP {code}")


def open_backend(spec: RemoteSpec, env: dict[str, str] | None = None) -> Backend:
    if spec.url.startswith("file://"):
        return DirBackend(spec)
    value = None
    if spec.auth_env:
        value = (os.environ if env is None else env).get(spec.auth_env)
        if not value:
            raise UsageError(f"remote {spec.name}: auth_env {spec.auth_env} is not set")
    if spec.url.startswith(("grpc://", "grpcs://")):
        from .reapi import ReapiBackend

        return ReapiBackend(spec, token=value)
    from ..inputs.addresses import ANYTHING  # a remote the user chose may be anywhere

    client = make_client(read_timeout=spec.timeout, min_rate=spec.min_rate, policy=spec.reach or ANYTHING)
    if value is not None:
        client.add_credential(spec.url, spec.auth_header, value)
    return HttpBackend(spec, client)


@dataclass
class Remotes:
    """The configured remotes, opened, plus what moving entries needs."""

    store: Store
    settings: Settings
    backends: list[Backend]
    verify_signatures: bool = True
    reporter: Reporter = field(default_factory=NullReporter)
    _downloaders: dict[str, Downloader] = field(default_factory=dict)
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
        data = backend.read_small("ac", key, RECORD_LIMIT)
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
        already: list[str] = [],  # noqa: B006 - never changed
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
        for record, backend in zip(answers, asked):
            if record is not None:
                return record, backend
        return None

    def _downloader(self, backend: Backend) -> Downloader:
        if backend.spec.url not in self._downloaders:
            client = backend.client if isinstance(backend, HttpBackend) else make_client()
            self._downloaders[backend.spec.url] = Downloader(self.store, client, mirrors=[], reporter=self.reporter)
        return self._downloaders[backend.spec.url]

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
        data = backend.read_small("prov", key, RECORD_LIMIT)
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
        if hasattr(backend, "download"):  # a REAPI server: ByteStream, not a URL
            backend.download(self.store, Sha256(blob), size, size if isinstance(size, int) else LOG_LIMIT)
            return
        wanted = Wanted(
            f"{record.name}: pull",
            Sha256(blob),
            (backend.location("cas", blob),),
            blob[:12],
            kind="cas",
            max_size=size if isinstance(size, int) else LOG_LIMIT,
        )
        try:
            self._downloader(backend).fetch(wanted)
        except FetchIntegrityError:
            raise IntegrityError(
                f"{backend.spec.name}: cas/{blob[:12]}: served bytes with another sha256; refused"
            ) from None
        except FetchError as exc:
            raise RemoteError(f"{backend.spec.name}: cas/{blob[:12]}: {'; '.join(exc.attempts)}") from None

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
        data = backend.read_small("ac", key, RECORD_LIMIT)
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
        data = backend.read_small("names", name, RECORD_LIMIT) if NAME_RE.fullmatch(name) else None
        try:
            document = parse_json(data, f"{backend.spec.name}: names/{name}", RECORD_LIMIT) if data else None
        except DocumentError:
            return []  # advisory: a broken index only means no keys to start from
        return [e for e in shapes.names_entries(document) if is_sha256(e["key"])]

    def _index(self, backend: Backend, record: BuildRecord) -> None:
        """Put the record's key first in names/<recipe>: what `why --remote` starts
        from. Advisory, and rewritten whole: a push racing this one may drop its
        key from the index, never from the cache."""
        name = record.name
        if not NAME_RE.fullmatch(name):
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
