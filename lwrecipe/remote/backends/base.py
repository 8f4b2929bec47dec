"""What every remote cache offers, whatever it is stored on: the `Backend`
protocol (directory.py, http.py and reapi.py implement it) and the `Entry` a
listing gives.

A remote holds the store's layout: blobs under cas/<sha256>, records under
ac/<key>, co-signatures under sig/<key>/<signer>, provenance under prov/<key>
and the names index under names/<recipe>. What is moved, and whether a record
is trusted, is decided above (remote.py); a backend only moves bytes, and
checks what it downloads against its sha256.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ...core.digests import Sha256
from ...inputs.fetch import Reporter
from ...store.store import Store
from ..config import RemoteSpec


@dataclass(frozen=True)
class Entry:
    """One file a remote holds, as a listing gives it."""

    kind: str  # cas, ac, sig or prov
    name: str  # a sha256; for sig, <key>/<signer>
    size: int
    mtime: float  # seconds since the epoch


class Backend(Protocol):
    """A remote cache. Failures to reach it raise RemoteError; bytes that are not
    what was asked for (another sha256, more than a limit) raise IntegrityError."""

    spec: RemoteSpec

    def exists(self, kind: str, name: str, size: int | None = None) -> bool:
        """Whether the remote holds kind/name (`size`: the blob's, when known)."""
        ...

    def read_small(self, kind: str, name: str, limit: int) -> bytes | None:
        """The bytes of kind/name, at most `limit` of them; None when it has none."""
        ...

    def download(
        self, store: Store, sha: Sha256, size: int | None, max_size: int, *, label: str, reporter: Reporter
    ) -> None:
        """Put cas/<sha> into the store's cas/, verified by its sha256 (and `size`,
        when known); more than max_size bytes are refused. `label` names it to
        the reporter."""
        ...

    def upload(self, kind: str, name: str, path: Path, reporter: Reporter) -> None:
        """Store the file at `path` as kind/name, replacing what the name held."""
        ...

    def listing(self, kind: str) -> list[Entry]:
        """Every object of the area `kind` (what a remote collection walks)."""
        ...

    def delete(self, kind: str, name: str) -> None:
        """Remove kind/name; nothing when it is not there."""
        ...

    def close(self) -> None: ...
