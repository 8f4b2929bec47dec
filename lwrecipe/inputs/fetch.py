"""Downloads pinned by sha256: mirrors, retries, resume, verification while streaming.

Bytes are staged in the store's tmp/, hashed as they arrive (the raw stream, so a
Content-Encoding cannot change what is verified) and renamed into sources/ only
once they match. The downloader is handed its HTTP client (web.py); it never prints,
it reports events to a Reporter. A recipe's URLs reach only the addresses the
client's AddressPolicy allows; the user's own mirrors (and a Wanted's `trusted`
locations) any, a mirror `held` (an unaccepted project's) only what a recipe's
URL may. A location that drips (deadlines.py) is abandoned, not retried.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..core import faults
from ..core.config.defaults import DEFAULT_MIN_RATE
from ..core.digests import Sha256, short
from ..core.errors import FetchError, FetchIntegrityError, OfflineMissing, StoreError
from ..store.staging import PipelinedWriter, Staged
from ..store.store import Store
from .addresses import AddressPolicy
from .deadlines import Limits
from .retry import Failure, RetryPolicy, parse_retry_after, retrying

if TYPE_CHECKING:
    from .web import Client

CHUNK = 1 << 20


@dataclass(frozen=True)
class Wanted:
    """One pinned download: what the recipe says of it."""

    label: str  # where it is declared, e.g. "busybox: sources[0]"
    sha256: Sha256
    urls: tuple[str, ...]  # the recipe's url, then its mirrors
    basename: str
    kind: str = "sources"  # the store directory it goes to ("cas" for blobs from a remote cache)
    max_size: int | None = None  # when known (a blob's size in its record): more bytes are refused
    trusted: tuple[str, ...] = ()  # locations among urls the user configured (Debian mirrors): any address


@dataclass(frozen=True)
class Fetched:
    wanted: Wanted
    path: Path
    size: int
    origin: str  # a URL, a mirror directory, or "cache"


class Reporter(Protocol):
    def begin(self, label: str, name: str, total: int | None) -> None: ...
    def advance(self, label: str, nbytes: int) -> None: ...
    def end(self, label: str, ok: bool, detail: str) -> None: ...


class NullReporter:
    def begin(self, label: str, name: str, total: int | None) -> None:
        pass

    def advance(self, label: str, nbytes: int) -> None:
        pass

    def end(self, label: str, ok: bool, detail: str) -> None:
        pass


def make_client(
    connect_timeout: float = 15.0,
    read_timeout: float = 60.0,
    min_rate: float = DEFAULT_MIN_RATE,
    policy: AddressPolicy | None = None,
) -> Client:
    """A client whose exchanges keep min_rate bytes a second over read_timeout
    seconds; policy: the addresses a recipe's URL may reach (default: public ones
    and LWRECIPE_ALLOW_PRIVATE's)."""
    from .web import Client  # here, not at the top: a fully cached build never loads it

    return Client(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        policy=policy,
        limits=Limits(timeout=read_timeout, min_rate=min_rate),
    )


def locations(wanted: Wanted, mirrors: Sequence[str]) -> list[str]:
    """Where to look, in order: user mirrors (by sha256, by a name a checksum index in
    the directory gives that sha256, then by file name), the url, its mirrors. Local
    mirror directories are file:// locations, the only ones --offline reads."""
    found: list[str] = []
    for mirror in mirrors:
        if mirror.startswith(("http://", "https://")):
            found += [f"{mirror.rstrip('/')}/{wanted.sha256}", f"{mirror.rstrip('/')}/{wanted.basename}"]
            continue
        directory = Path(mirror.removeprefix("file://")).absolute()
        indexed = [f"file://{directory}/{name}" for name in checksum_index(directory).get(wanted.sha256, ())]
        found += [f"file://{directory}/{wanted.sha256}", *indexed, f"file://{directory}/{wanted.basename}"]
    found += wanted.urls
    return list(dict.fromkeys(found))


_INDEXES: dict[Path, dict[str, list[str]]] = {}


def checksum_index(directory: Path) -> dict[str, list[str]]:
    """sha256 -> file names, from the directory's SHA256SUMS and *.sha256sums files
    (`sha256sum` output), so a distribution's copy under its own name is found
    (`musl_1.2.5.orig.tar.gz`). The names only say where to look: what is read is
    verified against the pinned sha256 as always. Read once per process."""
    if directory not in _INDEXES:
        index: dict[str, list[str]] = {}
        try:
            files = sorted(p for p in directory.iterdir() if p.name == "SHA256SUMS" or p.name.endswith(".sha256sums"))
        except OSError:
            files = []
        for path in files:
            for line in path.read_text(errors="replace").splitlines():
                digest, _, name = line.partition(" ")
                name = name.strip().lstrip("*")
                if len(digest) == 64 and name and "/" not in name and name not in (".", ".."):
                    index.setdefault(digest.lower(), []).append(name)
        _INDEXES[directory] = index
    return _INDEXES[directory]


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass
class Downloader:
    store: Store
    client: Client
    mirrors: Sequence[str] = ()
    held: Collection[str] = ()  # mirrors an unaccepted project chose: held to the client's AddressPolicy
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    reporter: Reporter = field(default_factory=NullReporter)
    sleep: Callable[[float], None] = time.sleep

    def fetch(self, wanted: Wanted, offline: bool = False) -> Fetched:
        """The verified file in sources/, downloading it if needed. Processes sharing
        the cache download each file once: the others wait and reuse it."""
        cached = self.store.verify_blob(wanted.kind, wanted.sha256)
        if cached is not None:
            return Fetched(wanted, cached, cached.stat().st_size, "cache")
        places = locations(wanted, self.mirrors)
        if offline:
            places = [where for where in places if where.startswith("file://")]
            if not places:
                raise OfflineMissing(
                    f"{wanted.label}: {wanted.basename} ({short(wanted.sha256)}) "
                    "is not in the cache and --offline forbids downloading it"
                )
        with self.store.lock(f"{wanted.kind}-{wanted.sha256}"):
            cached = self.store.verify_blob(wanted.kind, wanted.sha256)
            if cached is not None:
                return Fetched(wanted, cached, cached.stat().st_size, "cache")
            return self._download(wanted, places, offline)

    def _download(self, wanted: Wanted, places: list[str], offline: bool) -> Fetched:
        attempts: list[str] = []
        mismatches = 0
        users = [m for m in self.mirrors if m not in self.held]
        mine = set(locations(Wanted(wanted.label, wanted.sha256, (), wanted.basename), users))
        for where in places:
            with self.store.staging() as staged:
                try:
                    self._get(where, staged, wanted, trusted=where in mine or where in wanted.trusted)
                except Failure as exc:
                    attempts.append(f"{where}: {exc.reason}")
                    continue
                except OSError as exc:
                    raise StoreError(f"{wanted.label}: cannot write to the cache: {exc.strerror or exc}") from None
                actual = staged.hexdigest()
                if actual != wanted.sha256:
                    mismatches += 1
                    attempts.append(f"{where}: expected sha256 {wanted.sha256}, got {actual}")
                    self.reporter.end(wanted.label, False, f"{where}: wrong bytes")
                    continue
                size = staged.size
                path = self.store.commit(staged, wanted.kind, wanted.sha256)
                self.reporter.end(wanted.label, True, where)
                return Fetched(wanted, path, size, where)
        if attempts and mismatches == len(attempts):
            raise FetchIntegrityError(f"{wanted.label}: {wanted.basename}", attempts)
        if offline:
            raise OfflineMissing(
                f"{wanted.label}: {wanted.basename} ({short(wanted.sha256)}) is in neither "
                "the cache nor a mirror directory, and --offline forbids downloading it"
            )
        raise FetchError(f"{wanted.label}: {wanted.basename}", attempts)

    def _get(self, where: str, staged: Staged, wanted: Wanted, trusted: bool = False) -> None:
        if where.startswith("file://"):
            path = Path(where.removeprefix("file://"))
            if not path.is_file():
                raise Failure("not in this mirror directory")
            if wanted.max_size is not None and path.stat().st_size > wanted.max_size:
                raise Failure(f"more than the expected {wanted.max_size} bytes; refused")
            self.reporter.begin(wanted.label, wanted.basename, path.stat().st_size)
            with path.open("rb") as src:
                while chunk := src.read(CHUNK):
                    staged.write(chunk)
                    self.reporter.advance(wanted.label, len(chunk))
                    faults.point("download")
            return
        retrying(self.policy, lambda: self._http_once(where, staged, wanted, trusted), self.sleep)

    def _http_once(self, url: str, staged: Staged, wanted: Wanted, trusted: bool) -> None:
        from .web import HttpError

        headers = {"Range": f"bytes={staged.size}-"} if staged.size else {}
        left = wanted.max_size - staged.size if wanted.max_size is not None else None
        try:
            with self.client.request("GET", url, headers=headers, trusted=trusted, size=left) as resp:
                status = resp.status
                if status == 429 or status >= 500:
                    raise Failure(
                        f"HTTP {status}", retry=True, retry_after=parse_retry_after(resp.headers.get("Retry-After"))
                    )
                if status == 416:
                    staged.reset()
                    raise Failure("HTTP 416 for a resumed download", retry=True)
                if status == 206 and staged.size:
                    match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
                    if not match or int(match.group(1)) != staged.size:
                        staged.reset()
                        raise Failure("bad Content-Range on a resumed download", retry=True)
                elif status == 200:
                    if staged.size:
                        staged.reset()  # the server ignored Range: start again
                else:
                    raise Failure(f"HTTP {status}")
                length = resp.headers.get("Content-Length")
                total = staged.size + int(length) if length and length.isdigit() else None
                self.reporter.begin(wanted.label, wanted.basename, total)
                writer = PipelinedWriter(staged)
                try:
                    for piece in resp.iter_raw():  # immutable bytes: the writer keeps them uncopied
                        if wanted.max_size is not None and writer.total + len(piece) > wanted.max_size:
                            raise Failure(f"more than the expected {wanted.max_size} bytes; refused")
                        writer.take(piece)
                        self.reporter.advance(wanted.label, len(piece))
                        faults.point("download")
                finally:
                    writer.close()  # staged then holds every byte received, for a resume
        except HttpError as exc:
            raise Failure(str(exc), retry=exc.retry) from None
