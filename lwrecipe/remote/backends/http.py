"""An HTTP(S) remote cache with the Bazel HTTP cache layout: GET/HEAD/PUT/DELETE
of {base}/<kind>/<name>, listed by WebDAV PROPFIND (nginx with the dav-ext
module, say).

Blobs come down through the same verified, resumable downloader as sources,
on this backend's client; 5xx, 408 and 429 answers and dropped connections are
tried again as its RetryPolicy says (inputs/retry.py: Retry-After, in seconds or
as a date, is honoured as for a download).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ...core import faults
from ...core.digests import Sha256
from ...core.errors import FetchError, FetchIntegrityError, IntegrityError, RemoteError
from ...inputs.fetch import Downloader, Reporter, Wanted
from ...inputs.retry import Failure, GaveUp, RetryPolicy, parse_retry_after, retrying
from ...store.store import Store
from ..config import RemoteSpec
from .base import Entry

if TYPE_CHECKING:
    from ...inputs.web import Client

T = TypeVar("T")


@dataclass
class HttpBackend:
    """An HTTP cache: GET/HEAD/PUT of {base}/cas/<sha256> and {base}/ac/<key>."""

    spec: RemoteSpec
    client: Client
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep

    def location(self, kind: str, name: str) -> str:
        return f"{self.spec.url}/{kind}/{name}"

    def _retrying(self, what: str, once: Callable[[], T]) -> T:
        """once()'s answer, asked again as the policy says after a failed exchange
        or an answer _status says to retry; RemoteError when it gives up."""
        from ...inputs.web import HttpError

        def attempt() -> T:
            try:
                return once()
            except HttpError as exc:
                raise Failure(str(exc) or type(exc).__name__, retry=exc.retry) from None

        try:
            return retrying(self.policy, attempt, self.sleep)
        except GaveUp as exc:
            raise RemoteError(f"{self.spec.name}: {what}: {exc.reason}") from None

    def exists(self, kind: str, name: str, size: int | None = None) -> bool:
        def once() -> bool:
            code, headers = self.client.status("HEAD", self.location(kind, name))
            return _status(code, headers, f"HEAD {kind}/{name}") == 200

        return self._retrying(f"HEAD {kind}/{name}", once)

    def read_small(self, kind: str, name: str, limit: int) -> bytes | None:
        def once() -> bytes | None:
            with self.client.request("GET", self.location(kind, name)) as resp:
                if _status(resp.status, resp.headers, f"GET {kind}/{name}") == 404:
                    return None
                data = resp.read(limit)
                if data is None:
                    raise IntegrityError(f"{self.spec.name}: {kind}/{name}: larger than {limit} bytes; refused")
                return data

        return self._retrying(f"GET {kind}/{name}", once)

    def download(
        self, store: Store, sha: Sha256, size: int | None, max_size: int, *, label: str, reporter: Reporter
    ) -> None:
        wanted = Wanted(label, sha, (self.location("cas", sha),), sha[:12], kind="cas", max_size=max_size)
        downloader = Downloader(store, self.client, mirrors=[], policy=self.policy, reporter=reporter, sleep=self.sleep)
        try:
            downloader.fetch(wanted)
        except FetchIntegrityError:
            raise IntegrityError(
                f"{self.spec.name}: cas/{sha[:12]}: served bytes with another sha256; refused"
            ) from None
        except FetchError as exc:
            raise RemoteError(f"{self.spec.name}: cas/{sha[:12]}: {'; '.join(exc.attempts)}") from None

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

    def _propfind(self, path: str) -> list[Member]:
        """The members of the collection at path, by WebDAV PROPFIND with Depth 1;
        [] when it does not exist."""
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
        return [] if data is None else parse_multistatus(data, url, f"{self.spec.name}: PROPFIND {path}/")

    def listing(self, kind: str) -> list[Entry]:
        found = []
        for member in self._propfind(kind):
            if kind == "sig" and member.is_dir:
                found += [
                    Entry(kind, f"{member.name}/{inner.name}", inner.size, inner.mtime)
                    for inner in self._propfind(f"sig/{member.name}")
                    if not inner.is_dir
                ]
            elif not member.is_dir:
                found.append(Entry(kind, member.name, member.size, member.mtime))
        return found

    def delete(self, kind: str, name: str) -> None:
        def once() -> None:
            code, headers = self.client.status("DELETE", self.location(kind, name))
            if _status(code, headers, f"DELETE {kind}/{name}") == 201:  # 5xx and the like raise in _status
                raise RemoteError(f"{self.spec.name}: DELETE {kind}/{name}: HTTP {code}")

        self._retrying(f"DELETE {kind}/{name}", once)

    def close(self) -> None:
        self.client.close()


@dataclass(frozen=True)
class Member:
    """One member of a WebDAV collection, as PROPFIND describes it."""

    name: str
    is_dir: bool
    size: int
    mtime: float  # seconds since the epoch; 0 when the server gives none


def parse_multistatus(data: bytes, url: str, where: str) -> list[Member]:
    """The members a PROPFIND (Depth 1) answer lists for the collection at url,
    the collection itself left out; RemoteError when it is not a WebDAV answer."""
    from email.utils import parsedate_to_datetime
    from urllib.parse import unquote, urlsplit
    from xml.etree import ElementTree

    try:
        tree = ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise RemoteError(f"{where}: not a WebDAV answer ({exc})") from None
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
        members.append(Member(href.rsplit("/", 1)[-1], is_dir, size, mtime))
    return members


def _status(code: int, headers: Mapping[str, str], what: str) -> int:
    """200/201/204/404 are answers; 5xx, 408 and 429 are retried; the rest are errors."""
    if code in (200, 201, 204, 404):
        return code
    if code >= 500 or code in (408, 429):
        raise Failure(f"HTTP {code}", retry=True, retry_after=parse_retry_after(headers.get("Retry-After")))
    if code in (401, 403):
        raise RemoteError(f"{what}: HTTP {code} (check the remote's auth_env)")
    raise RemoteError(f"{what}: HTTP {code}")
