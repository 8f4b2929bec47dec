"""Deterministic packing of trees into tar streams (the canonical archive).

The canonical archive: entries sorted by path, uid/gid 0 with no names, modes
0755/0644 (directories 0755), one mtime for all, symlinks kept, hardlinks stored
once then linked, no xattrs; device nodes, fifos and sockets refused. Its
uncompressed sha256 is an output id. Unpacking untrusted archives is unpack.py's.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .errors import UnsafeArchive
from .keys import Sha256

COPY_BUFFER = 1 << 20


@dataclass(frozen=True)
class Entry:
    rel: str  # posix path relative to the root, no leading ./
    kind: str  # "dir" | "file" | "symlink" | "hardlink"
    mode: int
    size: int = 0
    target: str = ""  # symlink target, or the first path of a hardlinked file


def normal_mode(st_mode: int) -> int:
    if stat.S_ISDIR(st_mode):
        return 0o755
    return 0o755 if st_mode & 0o111 else 0o644


def scan_tree(root: Path, exclude: tuple[str, ...] = ()) -> list[Entry]:
    """Every entry below `root` but the top-level names in `exclude`, sorted by the bytes of its path."""
    found: list[tuple[bytes, str, os.stat_result]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        if exclude and dirpath == str(root):
            dirnames[:] = [d for d in dirnames if d not in exclude]
            filenames = [f for f in filenames if f not in exclude]
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            found.append((os.fsencode(rel), rel, os.lstat(full)))
    found.sort(key=lambda item: item[0])
    entries: list[Entry] = []
    first_of_inode: dict[tuple[int, int], str] = {}
    for _, rel, st in found:
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            entries.append(Entry(rel, "dir", 0o755))
        elif stat.S_ISLNK(mode):
            entries.append(Entry(rel, "symlink", 0o777, target=os.readlink(root / rel)))
        elif stat.S_ISREG(mode):
            inode = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and inode in first_of_inode:
                entries.append(Entry(rel, "hardlink", normal_mode(mode), target=first_of_inode[inode]))
            else:
                first_of_inode.setdefault(inode, rel)
                entries.append(Entry(rel, "file", normal_mode(mode), size=st.st_size))
        else:
            raise UnsafeArchive(f"{root / rel}: {_kind_name(mode)} cannot be stored in an output "
                                "(device nodes, fifos and sockets are refused)")
    return entries


def _kind_name(mode: int) -> str:
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device node"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def _tarinfo(entry: Entry, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.rel)
    info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = entry.mode, mtime, 0, 0, "", ""
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, entry.target
    elif entry.kind == "hardlink":
        info.type, info.linkname = tarfile.LNKTYPE, entry.target
    else:
        info.size = entry.size
    return info


def write_tree(root: Path, out: BinaryIO, mtime: int, exclude: tuple[str, ...] = ()) -> list[Entry]:
    """Write the canonical archive of `root` to `out`; returns what was written."""
    entries = scan_tree(root, exclude)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=COPY_BUFFER) as tar:
        for entry in entries:
            info = _tarinfo(entry, mtime)
            if entry.kind == "file":
                with open(root / entry.rel, "rb") as fh:
                    if os.fstat(fh.fileno()).st_size != entry.size:
                        raise UnsafeArchive(f"{root / entry.rel}: changed while being packed")
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    return entries


class HashingWriter:
    """A write-only stream that hashes what passes through and forwards it on."""

    def __init__(self, sink: BinaryIO | None = None) -> None:
        self._hash = hashlib.sha256()
        self._sink = sink
        self.size = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.size += len(data)
        if self._sink is not None:
            self._sink.write(data)
        return len(data)

    def flush(self) -> None:
        if self._sink is not None:
            self._sink.flush()

    def hexdigest(self) -> Sha256:
        return Sha256(self._hash.hexdigest())


def tree_sha256(root: Path, mtime: int = 0) -> Sha256:
    """The sha256 of the canonical archive of `root`, without storing it."""
    sink = HashingWriter()
    write_tree(root, sink, mtime)  # type: ignore[arg-type]
    return sink.hexdigest()
