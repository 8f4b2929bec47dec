"""Writing the entries of an untrusted archive (tar, zip, a .deb's data) below a
directory, through directory file descriptors, never following a link.

Every entry's parent is reached one component at a time with O_NOFOLLOW from a
directory already held open (safefs.HeldDirs): an entry whose path goes through a
link — one the archive itself made, or one that was there — is refused, as is one
through a file. Files are created O_EXCL|O_NOFOLLOW; symlinks are made as content
and never followed here; a hardlink may only name a regular file this archive made
(linkat without following). An entry over a file or link of the same name replaces
it (unlinked first, as GNU tar and dpkg do); over a directory it is refused, and a
directory over a file or link too. Modes are given by the caller, never the umask's.

With `contained`, a symlink must resolve inside the directory, and every symlink
is judged again once the archive is complete (a later entry can turn an earlier
link outward); resolving is done by reading links beneath the directory
(HeldDirs.link_leaves), not by os.path.realpath, which a long chain fools
(CVE-2025-4517). Any refusal is UnsafeArchive naming the archive and the entry.

An archive is also refused, part way, once its entries pass `UnpackLimits` (the
user's `[unpack]`): more bytes of file data or more entries than that is an
archive bomb, not a source tree. Nothing the writer keeps grows with more than the
entry count, and `members` reads a tar without tarfile's list of every member.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..core.errors import UnsafeArchive
from ..core.safefs import Beneath, HeldDirs, LinkRefused

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


@dataclass(frozen=True)
class UnpackLimits:
    """`[unpack]` of the user's config (docs/sources.md "Unpacking"): what one archive
    may unpack to. The defaults hold every real source (the Linux kernel is ~1.4 GB
    in ~80k files, LLVM ~1.5 GB in ~140k) with room to spare."""

    max_size: int = 16 << 30  # bytes of file data
    max_entries: int = 2_000_000  # files, directories and links


def members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The members of a tar as they are read, without tarfile keeping each one in
    `tar.members` (it does, even in stream mode: 300,000 empty files cost ~130 MiB).
    A member's data must be read before the next is asked for."""
    while (member := tar.next()) is not None:
        tar.members = []  # type: ignore[attr-defined]  # set in TarFile.__init__; typeshed leaves it out
        yield member


def too_big(label: str, limits: UnpackLimits) -> UnsafeArchive:
    return UnsafeArchive(f"{label}: unpacks to more than {shown_size(limits.max_size)} (max_size in [unpack]); refused")


def shown_size(n: int) -> str:
    """16 GiB, 1 MiB, 1.5 KiB, 900 bytes."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


class TreeWriter:
    """The entries of one archive, written below `dest` (which must exist). Names are
    relative, already checked for `..` and absolute paths; `entry` is the name as the
    archive has it, for messages."""

    def __init__(self, dest: Path, label: str, contained: bool, limits: UnpackLimits = UnpackLimits()) -> None:
        self.label, self.contained, self.limits = label, contained, limits
        self.size = 0  # bytes of file data written
        self.count = 0  # entries written
        self.root = Beneath(dest)
        self.dirs = HeldDirs(self.root)
        self.regular: set[str] = set()  # files (and hardlinks to them) this archive made, by name
        self.links: dict[str, str] = {}  # symlinks this archive made: name -> entry
        self.times: dict[str, float] = {}  # directory entries' mtimes, set last

    def close(self) -> None:
        self.dirs.close()
        self.root.close()

    def __enter__(self) -> TreeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def refuse(self, entry: str, why: str) -> UnsafeArchive:
        return UnsafeArchive(f"{self.label}: {entry!r}: {why}")

    def _one_more(self) -> None:
        self.count += 1
        if self.count > self.limits.max_entries:
            raise UnsafeArchive(
                f"{self.label}: has more than {self.limits.max_entries:,} entries (max_entries in [unpack]); refused"
            )

    def _parent(self, entry: str, parts: tuple[str, ...]) -> int:
        try:
            return self.dirs.fd(parts[:-1], create=True)
        except LinkRefused as exc:
            raise self.refuse(entry, f"goes through the symlink {exc.rel!r}") from None
        except (NotADirectoryError, FileExistsError) as exc:
            raise self.refuse(entry, f"goes through {exc.filename!r}, which is not a directory") from None

    def _make_room(self, entry: str, parent: int, name: str) -> None:
        """Remove a file or link at `name` for a new one; a directory there is refused."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise self.refuse(entry, "replaces a directory of the same name")
        os.unlink(name, dir_fd=parent)

    def _forget(self, name: str) -> None:
        self.regular.discard(name)
        self.links.pop(name, None)

    def directory(self, name: str, entry: str, mtime: float | None = None) -> None:
        self._one_more()
        parts = tuple(name.split("/"))
        parent = self._parent(entry, parts)
        st = _lstat(parent, parts[-1])
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise self.refuse(entry, "a directory over another entry")
        os.fchmod(self.dirs.fd(parts, create=True), 0o755)
        if mtime is not None:
            self.times[name] = mtime

    def file(self, name: str, entry: str, data: IO[bytes], mode: int, mtime: float | None = None) -> None:
        self._one_more()
        parts = tuple(name.split("/"))
        parent = self._parent(entry, parts)
        try:
            fd = os.open(parts[-1], _CREATE, 0o600, dir_fd=parent)
        except FileExistsError:
            self._make_room(entry, parent, parts[-1])
            fd = os.open(parts[-1], _CREATE, 0o600, dir_fd=parent)
        with open(fd, "wb") as out:
            while chunk := data.read(_CHUNK):
                self.size += len(chunk)
                if self.size > self.limits.max_size:
                    raise too_big(self.label, self.limits)
                out.write(chunk)
            out.flush()  # before the time is set: a later write would move it
            os.fchmod(fd, mode)
            if mtime is not None:
                os.utime(fd, (mtime, mtime))
        self._forget(name)
        self.regular.add(name)

    def symlink(self, name: str, entry: str, target: str) -> None:
        self._one_more()
        parts = tuple(name.split("/"))
        self._parent(entry, parts)  # first: a way through a link is refused as such
        if self.contained and self.dirs_leave(parts, target):
            raise self.refuse(entry, "symlink points outside the tree")
        parent = self._parent(entry, parts)  # judging it may have let the parent go
        self._make_room(entry, parent, parts[-1])
        os.symlink(target, parts[-1], dir_fd=parent)
        self._forget(name)
        self.links[name] = entry

    def hardlink(self, name: str, entry: str, target: str, shown: str, mtime: float | None = None) -> None:
        """A hardlink `name` to the regular file `target` this archive made (`shown`:
        the target as the archive names it)."""
        self._one_more()
        if target not in self.regular or target == name:
            raise self.refuse(entry, f"hardlink to {shown!r}, not an earlier file")
        src = tuple(target.split("/"))
        parts = tuple(name.split("/"))
        src_dir = os.dup(self._parent(shown, src))  # held: finding the new name's parent may let it go
        try:
            parent = self._parent(entry, parts)
            self._make_room(entry, parent, parts[-1])
            os.link(src[-1], parts[-1], src_dir_fd=src_dir, dst_dir_fd=parent, follow_symlinks=False)
            if mtime is not None:
                os.utime(parts[-1], (mtime, mtime), dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(src_dir)
        self._forget(name)
        self.regular.add(name)

    def dirs_leave(self, parts: tuple[str, ...], target: str) -> bool:
        try:
            return self.dirs.link_leaves(parts, target)
        except (LinkRefused, NotADirectoryError):
            return True  # its own directory is not a real one: refused either way

    def finish(self) -> None:
        """Judge every symlink again in the complete tree, then set directory mtimes
        (deepest first, as tarfile does)."""
        if self.contained:
            for name, entry in self.links.items():
                parts = tuple(name.split("/"))
                if self.dirs_leave(parts, os.readlink(parts[-1], dir_fd=self.dirs.fd(parts[:-1]))):
                    raise self.refuse(entry, "symlink points outside the tree")
        for name in sorted(self.times, reverse=True):
            parts = tuple(name.split("/"))
            os.utime(parts[-1], (self.times[name],) * 2, dir_fd=self.dirs.fd(parts[:-1]), follow_symlinks=False)

    def lstat(self, name: str) -> os.stat_result | None:
        try:
            return self.dirs.lstat(tuple(name.split("/")))
        except (LinkRefused, NotADirectoryError):
            return None


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
