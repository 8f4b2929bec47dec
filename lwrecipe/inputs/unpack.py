"""Safe unpacking of untrusted archives into a source tree.

tar (plain, gzip, bzip2, xz, zstd) and zip, recognised by their bytes, not their
names. tarfile and zipfile only read the archive; every entry is written by
entries.TreeWriter, through directory file descriptors, never through a link (one
the archive made included). Refused: absolute paths, `..`, an entry through a link,
a symlink that resolves outside the tree (judged as the kernel resolves it, once
made and again when the archive is complete), a hardlink to anything but an
earlier file, device files and fifos, setuid/setgid bits. The tree does not depend
on the host umask. Any refusal raises UnsafeArchive and names the entry; so does
an archive that unpacks to more bytes or entries than `UnpackLimits` allows.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO, Literal

from ..core import faults
from ..core.errors import UnsafeArchive
from .entries import TreeWriter, UnpackLimits, members

MAGIC = [
    (b"\x1f\x8b", "gz"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zst"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),
]


def archive_kind(path: Path) -> str | None:
    """'tar', 'gz', 'bz2', 'xz', 'zst' or 'zip'; None when the file is not an archive."""
    with path.open("rb") as fh:
        head = fh.read(512)
    for magic, kind in MAGIC:
        if head.startswith(magic):
            return kind
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return None


def strip_name(name: str, strip: int) -> str | None:
    """The entry name without its first `strip` components; None when nothing is left."""
    parts = [p for p in PurePosixPath(name).parts if p not in (".", "")]
    if name.startswith("/"):
        return name  # refused by the checks, never silently made relative
    rest = parts[strip:]
    return "/".join(rest) if rest else None


def _check_name(label: str, name: str) -> None:
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"{label}: {name!r}: absolute path")
    if ".." in PurePosixPath(name).parts:
        raise UnsafeArchive(f"{label}: {name!r}: path contains '..'")


def unpack(
    archive: Path, dest: Path, strip: int = 0, label: str | None = None, limits: UnpackLimits = UnpackLimits()
) -> None:
    """Unpack `archive` into `dest` (created if missing). `label` names the source in errors."""
    label = label or archive.name
    dest.mkdir(parents=True, exist_ok=True)
    kind = archive_kind(archive)
    if kind is None:
        raise UnsafeArchive(f"{label}: not an archive (use unpack = false for plain files)")
    try:
        with archive.open("rb") as fh, TreeWriter(dest, label, contained=True, limits=limits) as tree:
            if kind == "zip":
                _unpack_zip(fh, tree, strip, label)
            elif kind == "zst":
                import zstandard

                with zstandard.ZstdDecompressor().stream_reader(fh) as raw:
                    _unpack_tar(raw, "r|", tree, strip, label)
            else:
                _unpack_tar(fh, "r|*", tree, strip, label)
            tree.finish()
            os.fchmod(tree.root.fd, 0o755)
    except UnsafeArchive:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise UnsafeArchive(f"{label}: cannot unpack: {exc}") from None
    faults.point("unpack")


def extract_tar(archive: Path, dest: Path, label: str, limits: UnpackLimits = UnpackLimits()) -> None:
    """An uncompressed tar (a git tree's canonical archive) into the existing `dest`,
    with unpack's checks."""
    try:
        with archive.open("rb") as fh, TreeWriter(dest, label, contained=True, limits=limits) as tree:
            _unpack_tar(fh, "r|", tree, 0, label)
            tree.finish()
    except UnsafeArchive:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise UnsafeArchive(f"{label}: cannot unpack: {exc}") from None


def _unpack_tar(fh: IO[bytes], mode: Literal["r|", "r|*"], tree: TreeWriter, strip: int, label: str) -> None:
    with tarfile.open(fileobj=fh, mode=mode) as tar:
        for member in members(tar):
            entry = member.name
            _check_name(label, entry)
            if member.isdev() or member.isfifo():
                raise UnsafeArchive(f"{label}: {entry!r}: device or fifo entries are refused")
            if member.mode & (stat.S_ISUID | stat.S_ISGID):
                raise UnsafeArchive(f"{label}: {entry!r}: setuid/setgid bits are refused")
            name = strip_name(entry, strip)
            if name is None:
                continue
            if member.isdir():
                tree.directory(name, entry, member.mtime)
            elif member.isreg():
                data = tar.extractfile(member)
                assert data is not None
                tree.file(name, entry, data, 0o755 if member.mode & 0o100 else 0o644, member.mtime)
            elif member.issym():
                tree.symlink(name, entry, member.linkname)
            elif member.islnk():
                _check_name(label, member.linkname)
                target = strip_name(member.linkname, strip)
                if target is None:
                    raise UnsafeArchive(f"{label}: {entry!r}: hardlink to a stripped entry")
                tree.hardlink(name, entry, target, member.linkname, member.mtime)
            else:
                raise UnsafeArchive(f"{label}: {entry!r}: is a special file")


_LINK_MAX = 4096  # a zip symlink's target is its data: no longer than a path


def _unpack_zip(fh: IO[bytes], tree: TreeWriter, strip: int, label: str) -> None:
    with zipfile.ZipFile(fh) as zf:
        for info in zf.infolist():
            entry = info.filename
            _check_name(label, entry)
            mode = info.external_attr >> 16
            if mode & (stat.S_ISUID | stat.S_ISGID):
                raise UnsafeArchive(f"{label}: {entry!r}: setuid/setgid bits are refused")
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
                raise UnsafeArchive(f"{label}: {entry!r}: device or fifo entries are refused")
            name = strip_name(entry.rstrip("/"), strip)
            if name is None:
                continue
            if info.is_dir():
                tree.directory(name, entry)
            elif stat.S_ISLNK(mode):
                with zf.open(info) as src:
                    link = src.read(_LINK_MAX + 1)
                if len(link) > _LINK_MAX:
                    raise UnsafeArchive(f"{label}: {entry!r}: symlink target longer than a path")
                tree.symlink(name, entry, link.decode())
            else:
                with zf.open(info) as src:
                    tree.file(name, entry, src, 0o755 if mode & 0o111 else 0o644)


def normalise_tree(root: Path) -> None:
    """Directories 0755, files 0755 or 0644 by the owner execute bit: the tree no longer
    depends on the umask. Walked through directory fds; links are left as they are."""
    todo = [os.open(root, _DIR)]
    os.fchmod(todo[0], 0o755)
    try:
        _normalise(todo)
    finally:
        for fd in todo:
            os.close(fd)


def _normalise(todo: list[int]) -> None:
    while todo:
        fd = todo.pop()
        try:
            with os.scandir(fd) as listing:
                entries = list(listing)
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    sub = os.open(entry.name, _DIR | os.O_NOFOLLOW, dir_fd=fd)
                    todo.append(sub)
                    os.fchmod(sub, 0o755)
                elif entry.is_file(follow_symlinks=False):
                    mode = entry.stat(follow_symlinks=False).st_mode
                    want = 0o755 if mode & 0o100 else 0o644
                    if mode & 0o7777 != want:
                        file = os.open(
                            entry.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd
                        )
                        try:
                            os.fchmod(file, want)
                        finally:
                            os.close(file)
        finally:
            os.close(fd)


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
