"""Deterministic packing of trees into tar streams (the canonical archive).

The canonical archive: entries sorted by path, uid/gid 0 with no names, modes
0755/0644 (directories 0755), one mtime for all, symlinks kept, hardlinks stored
once then linked, no xattrs; device nodes, fifos and sockets refused. Its
uncompressed sha256 is an output id. Unpacking untrusted archives is unpack.py's.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..core import faults
from ..core.digests import Sha256
from ..core.errors import UnsafeArchive

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


def iter_tree(root: Path, exclude: tuple[str, ...] = ()) -> Iterator[Entry]:
    """Every entry below `root` but the top-level names in `exclude`, in the order
    of the bytes of its path, produced as the tree is read: a directory is listed
    when it comes out of the heap, which is before any of its children can be
    due, since a path sorts before every path below it. A directory that cannot
    be read is an error, never silently left out."""
    heap: list[tuple[bytes, str, os.DirEntry[str]]] = []

    def add_children(path: str, prefix: str) -> None:
        with os.scandir(path) as listing:
            for item in listing:
                if prefix or item.name not in exclude:
                    rel = prefix + item.name
                    heapq.heappush(heap, (os.fsencode(rel), rel, item))

    add_children(str(root), "")
    first_of_inode: dict[tuple[int, int], str] = {}
    while heap:
        _, rel, item = heapq.heappop(heap)
        st = item.stat(follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            add_children(item.path, rel + "/")
            yield Entry(rel, "dir", 0o755)
        elif stat.S_ISLNK(mode):
            yield Entry(rel, "symlink", 0o777, target=os.readlink(item.path))
        elif stat.S_ISREG(mode):
            inode = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and inode in first_of_inode:
                yield Entry(rel, "hardlink", normal_mode(mode), target=first_of_inode[inode])
            else:
                first_of_inode.setdefault(inode, rel)
                yield Entry(rel, "file", normal_mode(mode), size=st.st_size)
        else:
            raise UnsafeArchive(
                f"{root / rel}: {_kind_name(mode)} cannot be stored in an output "
                "(device nodes, fifos and sockets are refused)"
            )


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


_TYPES = {"dir": tarfile.DIRTYPE, "file": tarfile.REGTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE}
# magic, version, uname, gname, devmajor, devminor, prefix and the block's padding: all fixed
_HEADER_TAIL = tarfile.POSIX_MAGIC + bytes(32 + 32 + 8 + 8 + 155 + 12)


def header(entry: Entry, mtime: int) -> bytes:
    """The header blocks tarfile writes for `entry` in PAX format. Plain ASCII
    paths up to 100 bytes (nearly all) get one ustar block built here; anything
    that needs a PAX extended header is left to tarfile."""
    name = entry.rel + "/" if entry.kind == "dir" else entry.rel
    if not (
        name.isascii()
        and entry.target.isascii()
        and len(name) <= 100
        and len(entry.target) <= 100
        and 0 <= entry.size < 8**11
        and 0 <= mtime < 8**11
    ):
        return _tarinfo(entry, mtime).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    block = b"".join(
        (
            name.encode().ljust(100, b"\0"),
            b"%07o\0" % entry.mode,
            b"0000000\0" * 2,  # uid and gid
            b"%011o\0" % entry.size,
            b"%011o\0" % mtime,
            b"        ",
            _TYPES[entry.kind],
            entry.target.encode().ljust(100, b"\0"),
            _HEADER_TAIL,
        )
    )
    return block[:148] + b"%06o\0" % sum(block) + block[155:]


BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE


class Sink(Protocol):
    """Where an archive's bytes go: a file, a Staged file, a HashingWriter, a zstd writer."""

    def write(self, data: bytes | memoryview, /) -> object: ...


class _Blocks:
    """Writes tar blocks to `out` in large pieces; counts the bytes for the final padding."""

    def __init__(self, out: Sink) -> None:
        self.out, self.buf, self.offset = out, bytearray(), 0
        self.chunk = memoryview(bytearray(COPY_BUFFER))  # one read buffer for every file

    def write(self, data: bytes | memoryview) -> None:
        self.buf += data
        self.offset += len(data)
        if len(self.buf) >= COPY_BUFFER:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            self.out.write(bytes(self.buf))
            self.buf.clear()

    def copy_file(self, path: Path, size: int) -> None:
        with open(path, "rb", buffering=0) as fh:
            if os.fstat(fh.fileno()).st_size != size:
                raise UnsafeArchive(f"{path}: changed while being packed")
            self.flush()
            left = size
            while left:
                n = fh.readinto(self.chunk[: min(left, COPY_BUFFER)])
                if not n:
                    raise UnsafeArchive(f"{path}: changed while being packed")
                self.out.write(self.chunk[:n])  # the sink copies what it keeps (zstd, hashlib)
                left -= n
            self.offset += size
        if size % BLOCK:
            self.write(bytes(BLOCK - size % BLOCK))


def write_tree(root: Path, out: Sink, mtime: int, exclude: tuple[str, ...] = ()) -> list[Entry]:
    """Write the canonical archive of `root` to `out`; returns what was written.

    The bytes are exactly what tarfile writes in PAX format (see `header`), but
    entries are written as the tree is read and file data is copied in large
    pieces through one buffer."""
    entries: list[Entry] = []
    blocks = _Blocks(out)
    files = 0
    for entry in iter_tree(root, exclude):
        entries.append(entry)
        blocks.write(header(entry, mtime))
        if entry.kind == "file":
            blocks.copy_file(root / entry.rel, entry.size)
            files += 1
            if files == 1:
                faults.point("pack")  # part of the archive is written
    blocks.write(bytes(BLOCK * 2))
    if blocks.offset % RECORD:
        blocks.write(bytes(RECORD - blocks.offset % RECORD))
    blocks.flush()
    return entries


class HashingWriter:
    """A write-only stream that hashes what passes through and forwards it on."""

    def __init__(self, sink: Sink | None = None) -> None:
        self._hash = hashlib.sha256()
        self._sink = sink
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        self._hash.update(data)
        self.size += len(data)
        if self._sink is not None:
            self._sink.write(data)
        return len(data)

    def hexdigest(self) -> Sha256:
        return Sha256(self._hash.hexdigest())


def tree_sha256(root: Path, mtime: int = 0) -> Sha256:
    """The sha256 of the canonical archive of `root`, without storing it."""
    sink = HashingWriter()
    write_tree(root, sink, mtime)
    return sink.hexdigest()


class _Reader:
    """Exact-size reads over a stream of chunks, without re-copying what is buffered."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read, self._buf, self._pos = read, b"", 0

    def _fill(self) -> None:
        self._buf, self._pos = self._read(COPY_BUFFER), 0
        if not self._buf:
            raise UnsafeArchive("archive ends in the middle of an entry")

    def exact(self, n: int) -> bytes:
        if self._pos + n <= len(self._buf):
            self._pos += n
            return self._buf[self._pos - n : self._pos]
        parts = []
        while n:
            if self._pos == len(self._buf):
                self._fill()
            take = min(n, len(self._buf) - self._pos)
            parts.append(self._buf[self._pos : self._pos + take])
            self._pos += take
            n -= take
        return b"".join(parts)

    def copy_to(self, fd: int, n: int) -> None:
        while n:
            if self._pos == len(self._buf):
                self._fill()
            take = min(n, len(self._buf) - self._pos)
            view = memoryview(self._buf)[self._pos : self._pos + take]
            while view:
                view = view[os.write(fd, view) :]
            self._pos += take
            n -= take


def _pax_records(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    while data:
        length, _, rest = data.partition(b" ")
        size = int(length)
        key, _, value = rest[: size - len(length) - 2].partition(b"=")
        out[key.decode()] = value.decode("utf-8", "surrogateescape")
        data = data[size:]
    return out


def _safe_rel(name: str, symlinks: set[str]) -> str:
    rel = name.rstrip("/")
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise UnsafeArchive(f"archive entry {name!r} is not a plain relative path")
    if symlinks:
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in symlinks:
                raise UnsafeArchive(f"archive entry {name!r} goes through a symlink")
    return rel


@dataclass(frozen=True)
class _Header:
    name: str
    mode: int
    size: int
    mtime: int
    type: bytes
    linkname: str


def _number(field: bytes) -> int:
    """A tar numeric field: octal text, or base-256 when the high bit is set."""
    if field[:1] in (b"\x80", b"\xff"):
        value = int.from_bytes(field[1:], "big")
        return -((1 << (8 * (len(field) - 1))) - value) if field[:1] == b"\xff" else value
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise UnsafeArchive(f"bad archive header: number field {field!r}") from None


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def parse_header(block: bytes) -> _Header:
    """One ustar header block, checksum verified (what tarfile.TarInfo.frombuf
    does for this format, without its per-field overhead)."""
    stored = _number(block[148:156])
    computed = sum(block[:148]) + 8 * 32 + sum(block[156:])
    if stored != computed:
        raise UnsafeArchive("bad archive header: checksum mismatch")
    name = _text(block[0:100])
    if block[257:263] == b"ustar\x00" and block[345:500].strip(b"\0"):
        name = _text(block[345:500]) + "/" + name
    kind = block[156:157]
    if kind == tarfile.DIRTYPE:
        name = name.rstrip("/")
    return _Header(
        name, _number(block[100:108]), _number(block[124:136]), _number(block[136:148]), kind, _text(block[157:257])
    )


def extract_canonical(read: Callable[[int], bytes], dest: Path) -> int:
    """Unpack a canonical archive (as write_tree writes it) from `read` into the
    existing directory `dest`; returns the number of entries. Only directories,
    regular files, symlinks and hardlinks to earlier files are accepted, with
    plain relative paths that never pass through a symlink."""
    src = _Reader(read)
    root = str(dest)
    symlinks: set[str] = set()
    files: set[str] = set()
    dirs: list[tuple[str, int, int]] = []
    pax: dict[str, str] = {}
    count = 0
    while True:
        header = src.exact(BLOCK)
        if header == bytes(BLOCK):
            for rel, mode, mtime in reversed(dirs):  # children first: writing into a directory moves its mtime
                os.chmod(f"{root}/{rel}", mode & 0o755)
                os.utime(f"{root}/{rel}", (mtime, mtime))
            return count
        info = parse_header(header)
        if info.type == tarfile.XHDTYPE:
            pax = _pax_records(src.exact(-(-info.size // BLOCK) * BLOCK)[: info.size])
            continue
        name, linkname = pax.get("path", info.name), pax.get("linkpath", info.linkname)
        size = int(pax.get("size", info.size))
        pax = {}
        rel = _safe_rel(name, symlinks)
        path = f"{root}/{rel}"  # plain strings: pathlib costs more than the system calls here
        count += 1
        if info.type == tarfile.DIRTYPE:
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                if not os.path.isdir(path) or os.path.islink(path):
                    raise UnsafeArchive(f"archive entry {name!r} is a directory over another entry") from None
            dirs.append((rel, info.mode, info.mtime))
        elif info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                src.copy_to(fd, size)
                os.fchmod(fd, info.mode & 0o755)
                os.utime(fd, (info.mtime, info.mtime))
            finally:
                os.close(fd)
            if size % BLOCK:
                src.exact(BLOCK - size % BLOCK)
            files.add(rel)
        elif info.type == tarfile.SYMTYPE:
            os.symlink(linkname, path)
            symlinks.add(rel)
        elif info.type == tarfile.LNKTYPE:
            if linkname not in files:
                raise UnsafeArchive(f"archive entry {name!r} links to {linkname!r}, not an earlier file")
            os.link(f"{root}/{linkname}", path)
        else:
            raise UnsafeArchive(f"archive entry {name!r} has a type an output may not have")
