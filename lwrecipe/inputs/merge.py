"""Putting sources into a build directory without ever following a link.

A recipe's sources are laid out one after the other, and a later one may land
where an earlier one left a link (a repository's `lib -> /usr/lib`, a git tree's
link that `strip` moved up, a tarball's). Every write here goes through a
directory file descriptor: a destination is reached with `safefs.Beneath` (no
link on the way), and a tree is merged entry by entry with no-follow calls
relative to the directory being filled. So:

- a destination, or a directory of a merged tree, that would go through a link
  is refused, naming the link and the source that made it;
- a file or link a later source puts where an earlier one left a file or a link
  replaces that entry (unlinked first, or renamed over it): it is never written
  through;
- a directory over a file, or a file over a directory, is refused.

The origin of a merge is read the same way: its links are copied as links,
never followed. `BuildDir.links` remembers which source made each link, for the
messages.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from ..core.errors import RecipeError, UnsafeArchive
from ..core.safefs import Beneath, LinkRefused

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def file_mode(st_mode: int) -> int:
    return 0o755 if st_mode & 0o100 else 0o644


class BuildDir:
    """The build directory (`top`) while sources are laid out in it; the source tree
    is `top/<src>`, and `../name` destinations are beside it."""

    def __init__(self, top: Path, src: str) -> None:
        self.top = Beneath(top)
        self.src = src
        self.links: dict[str, tuple[str, int]] = {}  # path below top -> (the source that made it, inode)

    def close(self) -> None:
        self.top.close()

    def rel(self, dest: str) -> str:
        """A source's `dest` as a path below the build directory (`../x` is beside the tree)."""
        parts: list[str] = [self.src]
        for part in PurePosixPath(dest).parts:
            if part == "..":
                parts.pop()
            elif part != ".":
                parts.append(part)
        return "/".join(parts)

    def shown(self, rel: str) -> str:
        """A path below the build directory as a recipe names it (relative to the source tree)."""
        if rel == self.src:
            return "."
        return rel.removeprefix(self.src + "/") if rel.startswith(self.src + "/") else f"../{rel}"

    def _who(self, rel: str) -> str:
        return self.links[rel][0].rsplit(": ", 1)[-1] if rel in self.links else "an earlier source"

    def _through(self, label: str, what: str, link: str) -> UnsafeArchive:
        return UnsafeArchive(f"{label}: {what} goes through the symlink {self.shown(link)} that {self._who(link)} made")

    def target(self, label: str, rel: str) -> Beneath:
        """The directory `rel` (made where missing), reached without a link on the way."""
        try:
            return self.top.opendir(rel, create=True)
        except LinkRefused as exc:
            raise self._through(label, f"its destination {self.shown(rel)}", exc.rel) from None
        except (NotADirectoryError, FileExistsError):
            raise UnsafeArchive(
                f"{label}: its destination {self.shown(rel)} is not a directory "
                "(an earlier source put a file on the way)"
            ) from None

    def merge(self, label: str, origin: int, rel: str, move: bool) -> None:
        """Merge the directory open as `origin` into the directory `rel`: moved entry by
        entry (a staging tree of ours, same file system) or copied (a path source)."""
        with self.target(label, rel) as dest:
            self._merge(label, origin, dest.fd, rel, move)
        self.record(label, rel)

    def put_file(self, label: str, fd: int, rel: str, name: str) -> None:
        """Copy the open regular file `fd` into the directory `rel` as `name`."""
        with self.target(label, rel) as dest:
            here = f"{rel}/{name}"
            self._clear(label, dest.fd, name, here, is_dir=False)
            self._copy(fd, os.fstat(fd), dest.fd, name)

    def _merge(self, label: str, src: int, dst: int, rel: str, move: bool) -> None:
        with os.scandir(src) as listing:
            names = sorted(entry.name for entry in listing)
        for name in names:
            here = f"{rel}/{name}"
            st = os.stat(name, dir_fd=src, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                self._merge_dir(label, src, dst, name, here, st, move)
            elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                self._clear(label, dst, name, here, is_dir=False, replace=move)
                if move:
                    os.rename(name, name, src_dir_fd=src, dst_dir_fd=dst)  # over a file or link: replaces it
                elif stat.S_ISLNK(st.st_mode):
                    os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
                else:
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src)
                    try:
                        self._copy(fd, st, dst, name)
                    finally:
                        os.close(fd)
            else:
                raise UnsafeArchive(f"{label}: {self.shown(here)}: not a file, directory or symlink")

    def _merge_dir(self, label: str, src: int, dst: int, name: str, here: str, st: os.stat_result, move: bool) -> None:
        old = self._clear(label, dst, name, here, is_dir=True)
        if old is None and move:
            os.rename(name, name, src_dir_fd=src, dst_dir_fd=dst)
            return
        if old is None:
            os.mkdir(name, 0o755, dir_fd=dst)
        sub_src = os.open(name, _DIR, dir_fd=src)
        try:
            sub_dst = os.open(name, _DIR, dir_fd=dst)
            try:
                self._merge(label, sub_src, sub_dst, here, move)
                if old is None:
                    os.utime(sub_dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(sub_dst)
        finally:
            os.close(sub_src)

    def _clear(
        self, label: str, dst: int, name: str, here: str, is_dir: bool, replace: bool = False
    ) -> os.stat_result | None:
        """What is at `name` in `dst` now, after making room for a new entry: a directory
        is merged into (for a directory), a file or link is removed (for a file or link,
        unless `replace`: a rename replaces it), anything else is refused."""
        old = _lstat(dst, name)
        if old is None:
            return None
        if stat.S_ISLNK(old.st_mode) and is_dir:
            raise self._through(label, f"its directory {self.shown(here)}", here)
        if stat.S_ISDIR(old.st_mode) != is_dir:
            kind = "directory" if is_dir else "file"
            raise UnsafeArchive(
                f"{label}: its {kind} {self.shown(here)} would replace "
                f"{'a directory' if not is_dir else 'a file'} an earlier source made"
            )
        if not is_dir and not replace:
            os.unlink(name, dir_fd=dst)
        return old

    @staticmethod
    def _copy(fd: int, st: os.stat_result, dst: int, name: str) -> None:
        out = os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, file_mode(st.st_mode), dir_fd=dst
        )
        try:
            with open(fd, "rb", closefd=False) as src, open(out, "wb", closefd=False) as sink:
                shutil.copyfileobj(src, sink, 1 << 20)
            os.fchmod(out, file_mode(st.st_mode))
            os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(out)

    def record(self, label: str, rel: str) -> None:
        """Note the links below `rel` that are new since the last look as made by `label`."""
        try:
            with self.top.opendir(rel) as d:
                found = list(_links(d.fd, rel))
        except OSError:
            return
        for path, inode in found:
            if self.links.get(path, ("", -1))[1] != inode:
                self.links[path] = (label, inode)


def _links(fd: int, rel: str) -> Iterator[tuple[str, int]]:
    with os.scandir(fd) as listing:
        entries = list(listing)
    for entry in entries:
        here = f"{rel}/{entry.name}"
        if entry.is_symlink():
            yield here, entry.inode()
        elif entry.is_dir(follow_symlinks=False):
            sub = os.open(entry.name, _DIR, dir_fd=fd)
            try:
                yield from _links(sub, here)
            finally:
                os.close(sub)


def stripped(label: str, field: str, root: int, strip: int) -> int:
    """A new fd for the directory `strip` levels below `root`, each level a single real
    directory (never a link)."""
    fd = os.dup(root)
    for _ in range(strip):
        with os.scandir(fd) as listing:
            children = list(listing)
        if len(children) != 1 or not children[0].is_dir(follow_symlinks=False):
            os.close(fd)
            raise RecipeError.one(
                label, field, "cannot strip: the tree has more than one top entry (or its one entry is not a directory)"
            )
        nxt = os.open(children[0].name, _DIR, dir_fd=fd)
        os.close(fd)
        fd = nxt
    return fd
