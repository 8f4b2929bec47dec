"""File operations beneath a directory that never follow a link: what lwrecipe uses
wherever content it does not control (a source tree, a build's output, a remote's
directory) chose the names. It depends on nothing else in lwrecipe.

A `Beneath` holds its root open as a directory file descriptor; every path below it
is resolved by the kernel with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
where the kernel has it (Linux 5.6), else one component at a time with
`O_NOFOLLOW`, so no component of the path — not only the last — may be a link,
and a name the content swaps for a link while lwrecipe works is refused as well.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

_SYS_OPENAT2 = 437  # the same number on every architecture (added after the syscall table unification)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class LinkRefused(OSError):
    """A path beneath a root went through a link (or out of the root); nothing was done."""

    def __init__(self, rel: str) -> None:
        super().__init__(errno.ELOOP, "a link is in the way", rel)
        self.rel = rel


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _load_openat2() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syscall = libc.syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    probe = _OpenHow(_DIR_FLAGS, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS)
    fd = syscall(_SYS_OPENAT2, ctypes.c_int(-100), b".", ctypes.byref(probe), ctypes.c_size_t(ctypes.sizeof(probe)))
    if fd < 0:
        return None  # ENOSYS (an old kernel) or a seccomp filter that refuses it: walk instead
    os.close(fd)
    return syscall


_openat2 = _load_openat2()


def _openat2_below(dirfd: int, path: str, how: _OpenHow) -> tuple[int, int]:
    """openat2 of `path` below `dirfd` as (fd, 0), or (-1, errno); retried while a
    rename races the lookup (the kernel asks for a retry) or a signal interrupts it."""
    assert _openat2 is not None
    while True:
        fd = _openat2(
            _SYS_OPENAT2, ctypes.c_int(dirfd), path.encode(), ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how))
        )
        if fd >= 0:
            return int(fd), 0
        err = ctypes.get_errno()
        if err != errno.EAGAIN and err != errno.EINTR:
            return -1, err


def parts_of(rel: str | PurePosixPath) -> tuple[str, ...]:
    """The components of a relative path; `..`, an absolute path and NUL are refused."""
    text = str(rel)
    if "\0" in text:
        raise LinkRefused(text)
    path = PurePosixPath(text)
    if path.is_absolute() or ".." in path.parts:
        raise LinkRefused(text)
    return tuple(p for p in path.parts if p != ".")


def child_dir(parent: int, name: str, shown: str, create: bool = False, mode: int = 0o755) -> int:
    """The directory `name` in `parent`, opened without following a link (made with
    `mode`, not the umask's, where missing if `create`): LinkRefused if it is a link,
    NotADirectoryError if it is something else."""
    made = False
    if create:
        try:
            os.mkdir(name, 0o700, dir_fd=parent)
            made = True
        except FileExistsError:
            pass
    try:
        fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        try:
            is_link = stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
        except OSError:
            raise exc from None
        if is_link:
            raise LinkRefused(shown) from None
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", shown) from None
    if made:
        os.fchmod(fd, mode)
    return fd


class Beneath:
    """A directory held open; every path below it is reached without following a link.

    The root itself is a path lwrecipe or its user chose, so it is opened as given
    (links in it are the user's); everything below is content's.
    """

    def __init__(self, root: Path | str, create: bool = False, *, fd: int | None = None) -> None:
        self.root = Path(root)
        if fd is None:
            if create:
                self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root, _DIR_FLAGS)
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Beneath:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self, rel: str | PurePosixPath, flags: int, mode: int = 0o644) -> int:
        """os.open of `rel` below the root: no link anywhere on the way or at the end."""
        parts = parts_of(rel)
        if not parts:
            return os.open(".", flags | os.O_CLOEXEC, dir_fd=self.fd)
        if _openat2 is not None:
            how = _OpenHow(
                flags | os.O_CLOEXEC | os.O_NOFOLLOW,
                mode if flags & os.O_CREAT else 0,
                _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS,
            )
            fd, err = _openat2_below(self.fd, "/".join(parts), how)
            if fd >= 0:
                return fd
            if err in (errno.ELOOP, errno.EXDEV) or (err == errno.ENOTDIR and self._is_link(parts)):
                raise LinkRefused("/".join(parts))
            raise OSError(err, os.strerror(err), "/".join(parts))
        parent = self._walk(parts[:-1], create=False)
        try:
            return os.open(parts[-1], flags | os.O_CLOEXEC | os.O_NOFOLLOW, mode, dir_fd=parent)
        except OSError as exc:
            if exc.errno == errno.ELOOP or (exc.errno == errno.ENOTDIR and self._is_link(parts)):
                raise LinkRefused("/".join(parts)) from None
            raise
        finally:
            if parent != self.fd:
                os.close(parent)

    def open_inside(self, rel: str | PurePosixPath, flags: int) -> int:
        """os.open of `rel` below the root following links, but only while every step
        of the resolution stays below the root: an absolute link, or a `..` (in a
        link) above the root, anywhere in the chain is refused (LinkRefused) even if
        the chain would come back in. What `serve` uses: a site's relative links work."""
        parts = parts_of(rel)
        if _openat2 is not None:
            how = _OpenHow(flags | os.O_CLOEXEC, 0, _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS)
            fd, err = _openat2_below(self.fd, "/".join(parts) or ".", how)
            if fd >= 0:
                return fd
            if err in (errno.ELOOP, errno.EXDEV):
                raise LinkRefused("/".join(parts))
            raise OSError(err, os.strerror(err), "/".join(parts))
        return self._resolve_inside(list(parts), flags)

    def _resolve_inside(self, todo: list[str], flags: int) -> int:
        """open_inside without openat2: one component at a time from held directory fds
        (`..` pops back to the fd it came from, never above the root), links read with
        readlink and expanded in place, every open O_NOFOLLOW."""
        rel = "/".join(todo)
        stack = [self.fd]
        links = 0
        try:
            while todo:
                name = todo.pop(0)
                if name in ("", "."):
                    continue
                if name == "..":
                    if len(stack) == 1:
                        raise LinkRefused(rel)
                    os.close(stack.pop())
                    continue
                try:
                    target = os.readlink(name, dir_fd=stack[-1])
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                else:
                    links += 1
                    if links > 40 or target.startswith("/"):
                        raise LinkRefused(rel)
                    todo[:0] = target.split("/")
                    continue
                last = not any(p not in ("", ".") for p in todo)
                try:
                    fd = os.open(name, (flags if last else _DIR_FLAGS) | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=stack[-1])
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        raise LinkRefused(rel) from None  # swapped for a link after readlink looked
                    raise
                if last:
                    return fd
                stack.append(fd)
            return os.open(".", flags | os.O_CLOEXEC, dir_fd=stack[-1])
        finally:
            for fd in stack[1:]:
                os.close(fd)

    def _is_link(self, parts: tuple[str, ...]) -> bool:
        """Whether the last of `parts` is a link (O_DIRECTORY on a link fails ENOTDIR, not ELOOP)."""
        try:
            parent = self._walk(parts[:-1], create=False)
        except OSError:
            return False
        try:
            return stat.S_ISLNK(os.stat(parts[-1], dir_fd=parent, follow_symlinks=False).st_mode)
        except OSError:
            return False
        finally:
            if parent != self.fd:
                os.close(parent)

    def _walk(self, parts: tuple[str, ...], create: bool) -> int:
        """A directory fd for `parts` (made where missing if `create`), refusing links."""
        fd = self.fd
        for i, name in enumerate(parts):
            try:
                nxt = child_dir(fd, name, "/".join(parts[: i + 1]), create)
            finally:
                if fd != self.fd:
                    os.close(fd)
            fd = nxt
        return fd

    def opendir(self, rel: str | PurePosixPath, create: bool = False) -> Beneath:
        """The directory `rel` below the root as a Beneath of its own (made, with its
        parents, when `create`); a link on the way or at the end is refused."""
        parts = parts_of(rel)
        if create:
            fd = self._walk(parts, create=True)
            return Beneath(self.root.joinpath(*parts), fd=fd if fd != self.fd else os.dup(fd))
        return Beneath(self.root.joinpath(*parts), fd=self.open(rel, _DIR_FLAGS))

    def opendir_inside(self, rel: str | PurePosixPath) -> Beneath:
        """The directory `rel` reached as open_inside reaches it (links that stay below
        the root followed), as a Beneath of its own."""
        return Beneath(self.root.joinpath(*parts_of(rel)), fd=self.open_inside(rel, _DIR_FLAGS))

    def lstat(self, rel: str | PurePosixPath) -> os.stat_result | None:
        """lstat of `rel` (None when it does not exist); its parents must be real directories."""
        parts = parts_of(rel)
        if not parts:
            return os.stat(self.fd)
        try:
            with self.opendir(PurePosixPath(*parts[:-1]) if len(parts) > 1 else ".") as parent:
                return os.stat(parts[-1], dir_fd=parent.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def read(self, rel: str | PurePosixPath, limit: int) -> bytes:
        """A regular file's bytes, at most `limit` + 1 read (the caller decides about more)."""
        fd = self.open(rel, os.O_RDONLY)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", str(rel))
            return fh.read(limit + 1)

    def entries(self, rel: str | PurePosixPath = ".") -> Iterator[os.DirEntry[str]]:
        """The entries of a directory below the root (their is_file()/is_dir() with
        follow_symlinks=False tell links apart)."""
        with self.opendir(rel) as d, os.scandir(d.fd) as it:
            yield from it

    def unlink_file(self, rel: str | PurePosixPath) -> bool:
        """Remove `rel` only if it is a regular file (False if missing or not one)."""
        parts = parts_of(rel)
        if not parts:
            return False
        with self.opendir(PurePosixPath(*parts[:-1]) if len(parts) > 1 else ".") as parent:
            try:
                st = os.stat(parts[-1], dir_fd=parent.fd, follow_symlinks=False)
            except FileNotFoundError:
                return False
            if not stat.S_ISREG(st.st_mode):
                return False
            os.unlink(parts[-1], dir_fd=parent.fd)
            return True

    def replace(self, src_rel: str | PurePosixPath, dst_rel: str | PurePosixPath) -> None:
        """rename(2) between two paths below the root, neither parent reached through a link.
        Whatever `dst_rel` names is replaced as an entry (a link there is replaced, not followed)."""
        src, dst = parts_of(src_rel), parts_of(dst_rel)
        if not src or not dst:
            raise LinkRefused(str(dst_rel))
        with (
            self.opendir(PurePosixPath(*src[:-1]) if len(src) > 1 else ".") as a,
            self.opendir(PurePosixPath(*dst[:-1]) if len(dst) > 1 else ".") as b,
        ):
            os.replace(src[-1], dst[-1], src_dir_fd=a.fd, dst_dir_fd=b.fd)

    def fsync(self) -> None:
        os.fsync(self.fd)


class HeldDirs:
    """The directories below a Beneath that one job (an archive being unpacked) works
    in, opened one component at a time with O_NOFOLLOW from the nearest one already
    open, made (mode `mode`) where missing if asked, and the most recent `limit` kept
    open: many entries of one tree without walking from the root for each. A link
    on the way is LinkRefused; a file on the way is NotADirectoryError."""

    def __init__(self, root: Beneath, mode: int = 0o755, limit: int = 128) -> None:
        self.root, self.mode, self.limit = root, mode, max(2, limit)
        self._fds: OrderedDict[tuple[str, ...], int] = OrderedDict()

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> HeldDirs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fd(self, parts: tuple[str, ...], create: bool = False) -> int:
        """The directory `parts` (components, no `..`) below the root, held open; valid
        until the next call."""
        if not parts:
            return self.root.fd
        held = self._fds.get(parts)
        if held is not None:
            self._fds.move_to_end(parts)
            return held
        fd = child_dir(self.fd(parts[:-1], create), parts[-1], "/".join(parts), create, self.mode)
        self._fds[parts] = fd
        while len(self._fds) > self.limit:
            os.close(self._fds.popitem(last=False)[1])
        return fd

    def lstat(self, parts: tuple[str, ...]) -> os.stat_result | None:
        """lstat of `parts` (None when it or a directory on the way is missing)."""
        try:
            return os.stat(parts[-1], dir_fd=self.fd(parts[:-1]), follow_symlinks=False)
        except FileNotFoundError:
            return None

    def link_leaves(self, link: tuple[str, ...], target: str) -> bool:
        """Whether a symlink at `link` with `target` resolves outside the root, as the
        kernel resolves it in the tree as it is now: links on the way are followed
        (read, never opened), `..` above the root is outside, an absolute target or a
        chain of more than 40 links too. From a missing component on, the rest is
        read as plain names (a dangling link is judged by where it would point)."""
        if target.startswith("/"):
            return True
        todo = target.split("/")
        at: list[str] = list(link[:-1])
        real = len(at)  # at[:real] are directories that exist (links already replaced)
        links = 0
        while todo:
            name = todo.pop(0)
            if name in ("", "."):
                continue
            if name == "..":
                if not at:
                    return True
                at.pop()
                real = min(real, len(at))
                continue
            st = self.lstat((*at, name)) if real == len(at) else None
            if st is not None and stat.S_ISLNK(st.st_mode):
                links += 1
                found = os.readlink(name, dir_fd=self.fd(tuple(at)))
                if links > 40 or found.startswith("/"):
                    return True
                todo[:0] = found.split("/")
                continue
            at.append(name)
            if st is not None and stat.S_ISDIR(st.st_mode):
                real = len(at)
        return False
