"""A reproducible initramfs: a cpio `newc` archive, gzip-compressed, written without root.

Device nodes are described, not created, so no privilege is needed. Entries are
sorted, owned by 0:0, stamped with one mtime and numbered in order; hardlinked
files share an inode and their data is stored once, with the first entry.
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


def _header(ino: int, mode: int, nlink: int, mtime: int, size: int, rdev: tuple[int, int], namesize: int) -> bytes:
    fields = (ino, mode, 0, 0, nlink, mtime, size, 0, 0, rdev[0], rdev[1], namesize, 0)
    return NEWC_MAGIC + b"".join(b"%08X" % f for f in fields)


def _pad(out: BinaryIO, length: int) -> None:
    out.write(b"\0" * (-length % 4))


def write_cpio(nodes: list[Node], out: BinaryIO, mtime: int) -> None:
    inodes: dict[str, int] = {}
    links: dict[str, int] = {}
    for node in nodes:
        links[node.hardlink_of or node.name] = links.get(node.hardlink_of or node.name, 0) + 1
    for number, node in enumerate(nodes, start=1):
        first = node.hardlink_of or node.name
        ino = inodes.setdefault(first, number)
        is_dir = stat.S_ISDIR(node.mode)
        nlink = 2 if is_dir else links[first]
        size = 0 if node.hardlink_of else node.size
        name = os.fsencode(node.name) + b"\0"
        out.write(_header(ino, node.mode, nlink, mtime, size, node.rdev, len(name)))
        out.write(name)
        _pad(out, 110 + len(name))
        if size == 0:
            continue
        if stat.S_ISLNK(node.mode):
            out.write(os.fsencode(node.link_target))
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
    parser.add_argument("--mtime", type=int, help="default: $SOURCE_DATE_EPOCH, else 0")
    parser.add_argument("--no-gzip", action="store_true", help="write the cpio archive uncompressed")
    args = parser.parse_args(argv)
    mtime = args.mtime if args.mtime is not None else int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    try:
        devices = [Device.parse(d) for d in args.device]
        nodes = collect(args.root, devices, args.dir)
        write_initramfs(nodes, args.out, mtime, compress=not args.no_gzip)
    except (ValueError, OSError) as exc:
        print(f"error: initramfs: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
