"""A reproducible initramfs: a cpio `newc` archive, gzip-compressed, written without root.

Device nodes are described, not created, so no privilege is needed. Entries are
sorted, owned by 0:0, stamped with one mtime and numbered in order; hardlinked
files share an inode and their data is stored once, with the first entry.

The archive is made of parts in this order, as `cpio -A` appends them in
linux-wasm's script: the entries of a base archive as they are (`--base`:
upstream's initramfs-base.cpio, whose device node needed root to make), then
the tree of `--root` with `--device` and `--dir` merged into it, then each
`--tree` as `cd TREE && find . | cpio -A` adds it ("." included), then each
`--file`. A name may come twice, as in upstream's archive: the kernel applies
entries in order, so a later directory entry sets that directory's mode.

This file uses the standard library only: recipes copy it into the sandbox and
run it as `python3 initramfs.py` (also `python -m lwrecipe.initramfs`).
"""

from __future__ import annotations

import argparse
import gzip
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

NEWC_MAGIC = b"070701"
TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Node:
    """One archive entry. `data_from` is the host file whose bytes it holds."""

    name: str
    mode: int  # full st_mode: type bits and permissions
    data_from: Path | None = None
    link_target: str = ""
    rdev: tuple[int, int] = (0, 0)
    size: int = 0
    hardlink_of: str = ""  # name of the first entry with the same inode
    data: bytes | None = None  # the bytes, for an entry read from a base archive


@dataclass(frozen=True)
class Device:
    name: str
    kind: str  # "c" | "b"
    major: int
    minor: int
    perm: int

    @classmethod
    def parse(cls, text: str) -> Device:
        """`path:c|b:major:minor[:octal-mode]`, for example `dev/console:c:5:1:600`."""
        parts = text.split(":")
        if len(parts) not in (4, 5) or parts[1] not in ("c", "b"):
            raise ValueError(f"device {text!r}: expected path:c|b:major:minor[:mode]")
        perm = int(parts[4], 8) if len(parts) == 5 else 0o666
        return cls(_clean(parts[0]), parts[1], int(parts[2]), int(parts[3]), perm)


def _clean(name: str) -> str:
    name = name.strip("/")
    if not name or ".." in name.split("/"):
        raise ValueError(f"bad archive path {name!r}")
    return name


def _perm(st_mode: int) -> int:
    if stat.S_ISDIR(st_mode):
        return 0o755
    if stat.S_ISLNK(st_mode):
        return 0o777
    return 0o755 if st_mode & 0o111 else 0o644


def collect(root: Path | None, devices: list[Device], dirs: list[str]) -> list[Node]:
    """The sorted entries of `root` plus the extra directories and device nodes."""
    nodes: dict[str, Node] = {}
    for d in dirs:
        name = _clean(d)
        for i in range(1, name.count("/") + 2):
            parent = "/".join(name.split("/")[:i])
            nodes[parent] = Node(parent, stat.S_IFDIR | 0o755)
    first_of_inode: dict[tuple[int, int], str] = {}
    if root is not None:
        found = []
        for dirpath, dirnames, filenames in os.walk(root):
            for entry in dirnames + filenames:
                full = Path(dirpath, entry)
                found.append((full.relative_to(root).as_posix(), full))
        for name, full in sorted(found, key=lambda item: os.fsencode(item[0])):
            st = full.lstat()
            kind = stat.S_IFMT(st.st_mode)
            if kind == stat.S_IFDIR:
                nodes[name] = Node(name, stat.S_IFDIR | 0o755)
            elif kind == stat.S_IFLNK:
                target = os.readlink(full)
                nodes[name] = Node(name, stat.S_IFLNK | 0o777, link_target=target, size=len(os.fsencode(target)))
            elif kind == stat.S_IFREG:
                inode = (st.st_dev, st.st_ino)
                first = first_of_inode.get(inode) if st.st_nlink > 1 else None
                if first is None:
                    first_of_inode[inode] = name
                nodes[name] = Node(name, stat.S_IFREG | _perm(st.st_mode), data_from=full, size=st.st_size,
                                   hardlink_of=first or "")
            else:
                raise ValueError(f"{full}: special files in the tree are refused; describe devices with --device")
    for dev in devices:
        for i in range(1, dev.name.count("/") + 1):
            parent = "/".join(dev.name.split("/")[:i])
            nodes.setdefault(parent, Node(parent, stat.S_IFDIR | 0o755))
        type_bits = stat.S_IFCHR if dev.kind == "c" else stat.S_IFBLK
        nodes[dev.name] = Node(dev.name, type_bits | dev.perm, rdev=(dev.major, dev.minor))
    return [nodes[name] for name in sorted(nodes, key=os.fsencode)]


def read_newc(path: Path) -> list[Node]:
    """The entries of a `newc` archive (the trailer dropped), in their order: name,
    type, permissions, device numbers and data; owners, times and inode numbers are
    not kept (the archive written gets 0:0, one mtime and its own numbering)."""
    raw = path.read_bytes()
    nodes: list[Node] = []
    at = 0
    while True:
        head = raw[at:at + 110]
        if len(head) < 110 or head[:6] != NEWC_MAGIC:
            raise ValueError(f"{path}: not a cpio newc archive at byte {at}")
        try:
            fields = [int(head[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        except ValueError:
            raise ValueError(f"{path}: bad cpio header at byte {at}") from None
        mode, size, rdev, namesize = fields[1], fields[6], (fields[9], fields[10]), fields[11]
        name_end = at + 110 + namesize
        name = raw[at + 110:name_end - 1].decode("utf-8", "surrogateescape")
        data_at = name_end + (-name_end % 4)
        if name == TRAILER:
            return nodes
        if len(raw) < data_at + size:
            raise ValueError(f"{path}: {name!r} is cut short")
        if name.startswith("/") or ".." in name.split("/"):
            raise ValueError(f"{path}: bad archive path {name!r}")
        data = raw[data_at:data_at + size]
        if stat.S_ISLNK(mode):
            nodes.append(Node(name, mode, link_target=os.fsdecode(data), size=size))
        else:
            nodes.append(Node(name, mode, rdev=rdev, size=size, data=data if stat.S_ISREG(mode) else None))
        at = data_at + size + (-(data_at + size) % 4)


def tree(root: Path) -> list[Node]:
    """`root` as `cd root && find . | cpio -o` would add it, sorted: "." first."""
    return [Node(".", stat.S_IFDIR | 0o755), *collect(root, [], [])]


def one_file(spec: str) -> Node:
    """`NAME=PATH`: the file at PATH as the archive's NAME (init=patches/initramfs/init)."""
    name, sep, path = spec.partition("=")
    if not sep:
        raise ValueError(f"file {spec!r}: expected NAME=PATH")
    st = Path(path).stat()
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"file {spec!r}: not a regular file")
    return Node(_clean(name), stat.S_IFREG | _perm(st.st_mode), data_from=Path(path), size=st.st_size)


def _header(ino: int, mode: int, nlink: int, mtime: int, size: int, rdev: tuple[int, int], namesize: int) -> bytes:
    fields = (ino, mode, 0, 0, nlink, mtime, size, 0, 0, rdev[0], rdev[1], namesize, 0)
    return NEWC_MAGIC + b"".join(b"%08X" % f for f in fields)


def _pad(out: BinaryIO, length: int) -> None:
    out.write(b"\0" * (-length % 4))


def write_cpio(nodes: list[Node], out: BinaryIO, mtime: int) -> None:
    links: dict[str, int] = {}  # names with hardlinks to them: their link count
    for node in nodes:
        if node.hardlink_of:
            links[node.hardlink_of] = links.get(node.hardlink_of, 1) + 1
    inodes: dict[str, int] = {}  # a name's inode: its latest entry's (a name may come twice, in two parts)
    for number, node in enumerate(nodes, start=1):
        first = node.hardlink_of or node.name
        ino = inodes[first] if node.hardlink_of else number
        inodes[node.name] = ino
        is_dir = stat.S_ISDIR(node.mode)
        nlink = 2 if is_dir else links.get(first, 1)
        size = 0 if node.hardlink_of else node.size
        name = os.fsencode(node.name) + b"\0"
        out.write(_header(ino, node.mode, nlink, mtime, size, node.rdev, len(name)))
        out.write(name)
        _pad(out, 110 + len(name))
        if size == 0:
            continue
        if stat.S_ISLNK(node.mode):
            out.write(os.fsencode(node.link_target))
        elif node.data is not None:
            out.write(node.data)
        else:
            assert node.data_from is not None
            written = 0
            with open(node.data_from, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    out.write(chunk)
                    written += len(chunk)
            if written != size:
                raise ValueError(f"{node.data_from}: changed while being archived")
        _pad(out, size)
    name = TRAILER.encode() + b"\0"
    out.write(_header(0, 0, 1, 0, 0, (0, 0), len(name)))
    out.write(name)
    _pad(out, 110 + len(name))


def write_initramfs(nodes: list[Node], dest: Path, mtime: int, compress: bool = True) -> None:
    tmp = dest.with_name(dest.name + ".part")
    try:
        with open(tmp, "wb") as raw:
            if compress:
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
                    write_cpio(nodes, gz, mtime)  # type: ignore[arg-type]
            else:
                write_cpio(nodes, raw, mtime)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="initramfs.py", description="Write a reproducible initramfs (cpio newc + gzip).")
    parser.add_argument("--root", type=Path, help="directory whose contents become the archive's /")
    parser.add_argument("--out", type=Path, required=True, help="the .cpio.gz (or .cpio with --no-gzip) to write")
    parser.add_argument("--device", action="append", default=[], metavar="PATH:c|b:MAJOR:MINOR[:MODE]")
    parser.add_argument("--dir", action="append", default=[], metavar="PATH", help="an extra empty directory")
    parser.add_argument("--base", type=Path, metavar="CPIO", help="a newc archive whose entries come first, as they are")
    parser.add_argument("--tree", action="append", default=[], type=Path, metavar="DIR",
                        help="a directory appended as `cd DIR && find . | cpio -A` would (repeatable)")
    parser.add_argument("--file", action="append", default=[], metavar="NAME=PATH", help="one file appended last")
    parser.add_argument("--mtime", type=int, help="default: $SOURCE_DATE_EPOCH, else 0")
    parser.add_argument("--no-gzip", action="store_true", help="write the cpio archive uncompressed")
    args = parser.parse_args(argv)
    mtime = args.mtime if args.mtime is not None else int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    try:
        devices = [Device.parse(d) for d in args.device]
        nodes = read_newc(args.base) if args.base else []
        if args.root or devices or args.dir:
            nodes += collect(args.root, devices, args.dir)
        for root in args.tree:
            nodes += tree(root)
        nodes += [one_file(spec) for spec in args.file]
        write_initramfs(nodes, args.out, mtime, compress=not args.no_gzip)
    except (ValueError, OSError) as exc:
        print(f"error: initramfs: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
