"""A directory remote (a shared filesystem, a mounted disk).

Whoever can write into a shared directory controls every name in it, so below
the configured root (opened as given: the user chose it) nothing is reached
through a link: every path goes through a safefs `Beneath` (openat2
RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, or O_NOFOLLOW one component at a time).
An area (`ac/`, `cas/`, `tmp/`...) that is a link is refused with one line; a
link where an object belongs is reported once (a warning naming the remote and
the object) and skipped: never read, listed, collected or written through. An
upload replaces whatever entry its name holds (rename(2) replaces a link, it
does not follow it); a removal removes only a regular file, and a co-signature
directory only when it is a real directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ...core import faults
from ...core.digests import Sha256
from ...core.errors import IntegrityError, RemoteError
from ...core.safefs import Beneath, LinkRefused
from ...inputs.fetch import CHUNK, Reporter
from ...store.store import Store
from ..config import RemoteSpec
from .base import Entry

_READ = os.O_RDONLY | os.O_NONBLOCK  # O_NONBLOCK: a FIFO planted where a file belongs must not hang a read


def shown(name: str) -> str:
    """A name from the remote as a message may quote it: control characters escaped."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in name)


def _to_stderr(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


@dataclass
class DirBackend:
    """A directory with the store's layout, reached without following a link."""

    spec: RemoteSpec
    warn: Callable[[str], None] = _to_stderr
    _reported: set[str] = field(default_factory=set)

    @property
    def root(self) -> Path:
        return Path(self.spec.url.removeprefix("file://"))

    def _report(self, rel: str) -> None:
        """One warning per object and run: a link (or other non-file) where an object belongs."""
        if rel not in self._reported:
            self._reported.add(rel)
            self.warn(
                f"{self.spec.name}: {shown(rel)}: a link (or not a regular file) where a remote object belongs; skipped"
            )

    def _refused(self, exc: LinkRefused, what: str) -> RemoteError:
        return RemoteError(
            f"{self.spec.name}: {shown(exc.rel)}: a link where a directory of the remote belongs; {what}"
        )

    def _open_root(self) -> Beneath | None:
        try:
            return Beneath(self.root)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RemoteError(f"{self.spec.name}: {exc.strerror}") from None

    def _open_file(self, kind: str, name: str) -> int | None:
        """A descriptor of the regular file kind/name; None when it is missing, or (reported)
        a link or not a regular file. A link on the way (an area that is a link) is refused."""
        rel = f"{kind}/{name}"
        root = self._open_root()
        if root is None:
            return None
        with root:
            try:
                fd = root.open(rel, _READ)
            except FileNotFoundError:
                return None
            except LinkRefused:
                try:
                    root.lstat(rel)  # the object itself, or an area on the way?
                except LinkRefused as exc:
                    raise self._refused(exc, "nothing read") from None
                self._report(rel)
                return None
            except OSError as exc:
                if exc.errno == errno.ENOTDIR:
                    return None
                raise RemoteError(f"{self.spec.name}: {shown(rel)}: {exc.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            self._report(rel)
            return None
        return fd

    def exists(self, kind: str, name: str, size: int | None = None) -> bool:
        fd = self._open_file(kind, name)
        if fd is not None:
            os.close(fd)
        return fd is not None

    def read_small(self, kind: str, name: str, limit: int) -> bytes | None:
        fd = self._open_file(kind, name)
        if fd is None:
            return None
        try:
            with os.fdopen(fd, "rb") as fh:
                data = fh.read(limit + 1)
        except OSError as exc:
            raise RemoteError(f"{self.spec.name}: {kind}/{name}: {exc.strerror}") from None
        if len(data) > limit:
            raise IntegrityError(f"{self.spec.name}: {kind}/{name}: larger than {limit} bytes; refused")
        return data

    def download(
        self, store: Store, sha: Sha256, size: int | None, max_size: int, *, label: str, reporter: Reporter
    ) -> None:
        """Copy cas/<sha> into the store's cas/, verified by its sha256 (what the
        downloader does for a URL, without following a link in the remote)."""
        where = f"{self.spec.name}: cas/{sha[:12]}"
        fd = self._open_file("cas", sha)
        if fd is None:
            reason = "a link or not a regular file; skipped" if f"cas/{sha}" in self._reported else "not there"
            raise RemoteError(f"{where}: {reason}")
        with os.fdopen(fd, "rb") as src, store.staging() as staged:
            while chunk := src.read(CHUNK):
                if staged.size + len(chunk) > max_size:
                    raise IntegrityError(f"{where}: more than the expected {max_size} bytes; refused")
                staged.write(chunk)
                faults.point("download")
            if staged.hexdigest() != sha or (size is not None and staged.size != size):
                raise IntegrityError(f"{where}: served bytes with another sha256; refused")
            store.commit(staged, "cas", sha)

    def upload(self, kind: str, name: str, path: Path, reporter: Reporter) -> None:
        label = f"push {kind}/{name[:12]}"
        rel = PurePosixPath(name)  # sig/<key>/<signer> is two levels below sig/
        try:
            with (
                Beneath(self.root, create=True) as root,
                root.opendir("tmp", create=True) as tmp,
                root.opendir(PurePosixPath(kind, rel.parent), create=True) as parent,
            ):
                staged = f"put-{secrets.token_hex(8)}"
                fd = tmp.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    size = path.stat().st_size
                    reporter.begin(label, name[:12], size)
                    with os.fdopen(fd, "wb") as out, path.open("rb") as src:
                        while chunk := src.read(CHUNK):
                            out.write(chunk)
                            reporter.advance(label, len(chunk))
                            faults.point("push")
                        out.flush()
                        os.fchmod(out.fileno(), 0o644)
                        os.fsync(out.fileno())
                    # rename(2) between the held directories: a link at kind/name is replaced, not followed
                    os.replace(staged, rel.name, src_dir_fd=tmp.fd, dst_dir_fd=parent.fd)
                    parent.fsync()
                finally:
                    tmp.unlink_file(staged)
        except LinkRefused as exc:
            raise self._refused(exc, f"{kind}/{name[:12]} not written") from None
        except OSError as exc:
            raise RemoteError(f"{self.spec.name}: cannot write {kind}/{name}: {exc.strerror}") from None
        reporter.end(label, True, self.spec.name)

    def listing(self, kind: str) -> list[Entry]:
        """Every regular file of the area (sig/ two levels deep: <key>/<signer>); links
        are reported and left out, an area that is a link is refused."""
        root = self._open_root()
        if root is None:
            return []
        found = []
        try:
            with root:
                for top, st in _entries(root, kind):
                    inner = [(top, st)]
                    if kind == "sig" and stat.S_ISDIR(st.st_mode):
                        inner = [(f"{top}/{name}", st) for name, st in _entries(root, f"sig/{top}")]
                    for name, st in inner:
                        if stat.S_ISREG(st.st_mode):
                            found.append(Entry(kind, name, st.st_size, st.st_mtime))
                        else:
                            self._report(f"{kind}/{name}")  # a link, a FIFO, a directory where a file belongs
        except LinkRefused as exc:
            raise self._refused(exc, "not listed (nothing collected)") from None
        except OSError as exc:
            raise RemoteError(f"{self.spec.name}: cannot list {kind}/: {exc.strerror}") from None
        return found

    def delete(self, kind: str, name: str) -> None:
        """Remove kind/name only if it is a regular file; a sig/<key>/ directory goes
        once its last co-signature has, and only if it is a real directory."""
        root = self._open_root()
        if root is None:
            return
        try:
            with root:
                if not root.unlink_file(f"{kind}/{name}") and root.lstat(f"{kind}/{name}") is not None:
                    self._report(f"{kind}/{name}")  # swapped for a link since the listing: left alone
                if kind == "sig" and "/" in name:
                    with root.opendir("sig") as sig:
                        key = name.split("/", 1)[0]
                        st = sig.lstat(key)
                        if st is not None and stat.S_ISDIR(st.st_mode):
                            with contextlib.suppress(OSError):  # other co-signatures are still there
                                os.rmdir(key, dir_fd=sig.fd)
        except LinkRefused as exc:
            raise self._refused(exc, f"{kind}/{name[:12]} not removed") from None
        except OSError as exc:
            raise RemoteError(f"{self.spec.name}: cannot remove {kind}/{name}: {exc.strerror}") from None

    def close(self) -> None:
        pass


def _entries(root: Beneath, rel: str) -> list[tuple[str, os.stat_result]]:
    """(name, lstat) of each entry of a directory below the root ([] when it does not exist)."""
    found = []
    try:
        with root.opendir(rel) as d, os.scandir(d.fd) as it:
            for entry in it:
                try:
                    found.append((entry.name, entry.stat(follow_symlinks=False)))
                except FileNotFoundError:
                    continue  # removed since it was listed (another collection)
    except FileNotFoundError:
        return []
    return found
