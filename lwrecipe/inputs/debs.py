"""Debian binary packages as pinned inputs: unpacking a .deb as `dpkg-deb -x` does
(its data archive only, no maintainer scripts) into a merged-/usr tree, and resolving
a set of package names to pins with apt's own resolver on an empty system.

A .deb is trusted no more than any download: its sha256 is pinned, and its entries
are checked as they are unpacked (no '..', nothing written through a symlink,
no device files), and written through directory file descriptors (entries.TreeWriter). Absolute symlinks are kept as they are: they mean a path inside
the environment the tree becomes, and nothing here ever follows them.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO, Protocol, cast
from urllib.parse import unquote

from ..core.errors import LwrecipeError, UnsafeArchive, UsageError
from .entries import TreeWriter, UnpackLimits, members, too_big

MERGED_USR = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
"""Top-level directories that are links into usr/ on a merged-/usr system (Debian 12 and later)."""

_AR_MAGIC = b"!<arch>\n"
_AR_HEADER = 60


@dataclass(frozen=True)
class DebPin:
    """One resolved package: what a recipe's deb source records."""

    name: str
    version: str
    arch: str
    url: str
    sha256: str
    size: int

    @property
    def filename(self) -> str:
        """apt's own name for the file (an epoch's ':' as %3a), as in /var/cache/apt/archives."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


def _data_member(fh: BinaryIO, label: str) -> tuple[str, int]:
    """Finds the data archive of a .deb; leaves `fh` at its first byte and returns (name, size)."""
    if fh.read(len(_AR_MAGIC)) != _AR_MAGIC:
        raise UnsafeArchive(f"{label}: not a Debian package (no ar header)")
    while True:
        header = fh.read(_AR_HEADER)
        if len(header) < _AR_HEADER or header[58:60] != b"`\n":
            raise UnsafeArchive(f"{label}: not a Debian package (no data.tar member)")
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise UnsafeArchive(f"{label}: not a Debian package (bad ar member size)") from None
        if name.startswith("data.tar"):
            return name, size
        fh.seek(size + (size & 1), os.SEEK_CUR)


class _Slice:
    """The `size` bytes of a file from where it stands: one ar member, read as a stream."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self.fh, self.left = fh, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.fh.read(n)
        self.left -= len(data)
        return data


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _decompressed(name: str, raw: IO[bytes], label: str) -> _Reader:
    suffix = name.removeprefix("data.tar")
    if suffix == ".xz":
        import lzma

        return lzma.LZMAFile(raw)
    if suffix == ".gz":
        import gzip

        return gzip.GzipFile(fileobj=raw)
    if suffix == ".zst":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(raw)
    if suffix == ".bz2":
        import bz2

        return bz2.BZ2File(raw)
    if suffix == "":
        return raw
    raise UnsafeArchive(f"{label}: {name}: unknown compression")


def _tree_name(label: str, name: str) -> str | None:
    """An entry's path in a merged-/usr tree; None for the archive's own root."""
    parts = [p for p in PurePosixPath(name).parts if p not in (".", "/")]
    if name.startswith("/") or ".." in parts:
        raise UnsafeArchive(f"{label}: {name!r}: path leaves the tree")
    if not parts:
        return None
    if parts[0] in MERGED_USR:
        parts.insert(0, "usr")
    return "/".join(parts)


def data_tar(deb: Path, label: str, limits: UnpackLimits = UnpackLimits()) -> bytes:
    """The data archive of `deb`, decompressed (lzma and zstd release the GIL, so
    several packages can be decompressed at once while another is unpacked); one
    that decompresses to more than `limits.max_size` is refused unread past it."""
    with deb.open("rb") as fh:
        name, size = _data_member(fh, label)
        try:
            member = cast("IO[bytes]", _Slice(fh, size))  # read() is all the decompressors call on it
            data = _decompressed(name, member, label).read(limits.max_size + 1)
        except (EOFError, OSError, ValueError) as exc:
            raise UnsafeArchive(f"{label}: cannot unpack: {exc}") from None
    if len(data) > limits.max_size:
        raise too_big(label, limits)
    return data


def extract_debs(debs: list[tuple[Path, Path, str]], limits: UnpackLimits = UnpackLimits()) -> None:
    """extract_deb for each (deb, dest, label) in order, decompressing up to one
    package per CPU ahead of the one being unpacked."""
    from concurrent.futures import ThreadPoolExecutor

    ahead = max(1, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=ahead) as pool:
        pending = {i: pool.submit(data_tar, deb, label, limits) for i, (deb, _, label) in enumerate(debs[:ahead])}
        for i, (deb, dest, label) in enumerate(debs):
            data = pending.pop(i).result()  # popped: its bytes go once it is unpacked
            if i + ahead < len(debs):
                nxt, _, nxt_label = debs[i + ahead]
                pending[i + ahead] = pool.submit(data_tar, nxt, nxt_label, limits)
            extract_deb(deb, dest, label, data, limits)


def extract_deb(
    deb: Path, dest: Path, label: str | None = None, data: bytes | None = None, limits: UnpackLimits = UnpackLimits()
) -> None:
    """Unpack the data archive of `deb` (or `data`, that archive already decompressed)
    into `dest` (created if missing), merged-/usr: `bin/x` lands in `usr/bin/x` and
    `dest/bin` becomes a link to `usr/bin`. Entries of a later package replace files
    and links of an earlier one, as dpkg does; nothing is written through a link
    (entries.TreeWriter), and links are kept as they are, absolute ones included."""
    label = label or deb.name
    dest.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = data_tar(deb, label, limits)
    try:
        with (
            tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar,
            TreeWriter(dest, label, contained=False, limits=limits) as tree,
        ):
            for member in members(tar):
                _extract_member(tar, member, tree, label)
            for top in MERGED_USR:
                st, usr = tree.lstat(top), tree.lstat(f"usr/{top}")
                if usr is not None and stat.S_ISDIR(usr.st_mode) and (st is None or not stat.S_ISLNK(st.st_mode)):
                    if st is not None:
                        raise UnsafeArchive(f"{label}: {top}/ exists as a directory in a merged-/usr tree")
                    os.symlink(f"usr/{top}", top, dir_fd=tree.root.fd)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, UnsafeArchive):
            raise
        raise UnsafeArchive(f"{label}: cannot unpack: {exc}") from None


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, tree: TreeWriter, label: str) -> None:
    rel = _tree_name(label, member.name)
    if rel is None:
        return
    if member.isdir():
        tree.directory(rel, member.name)
    elif member.isreg():
        source = tar.extractfile(member)
        assert source is not None
        tree.file(rel, member.name, source, 0o755 if member.mode & 0o111 else 0o644)  # setuid/setgid cleared
    elif member.issym():
        tree.symlink(rel, member.name, member.linkname)
    elif member.islnk():
        target = _tree_name(label, member.linkname)
        tree.hardlink(rel, member.name, target or "", member.linkname)
    else:
        raise UnsafeArchive(f"{label}: {member.name!r}: device or fifo entries are refused")


_URI_LINE = re.compile(r"'(?P<url>[^']+)' (?P<file>\S+) (?P<size>\d+) SHA256:(?P<sha>[0-9a-f]{64})")


def resolve(packages: Iterable[str], arch: str | None = None, installed: Iterable[DebPin] = ()) -> list[DebPin]:
    """Every package an install of `packages` needs, without recommends, as apt
    resolves it from the indices it has verified (run `apt-get update` first), on a
    system where only `installed` is (an environment's packages; none: an empty
    system). Sorted by name."""
    wanted = list(packages)
    if not wanted:
        raise UsageError("debs: no packages given")
    if shutil.which("apt-get") is None:
        raise LwrecipeError("debs: apt-get is not installed; resolving packages needs Debian's apt")
    with tempfile.TemporaryDirectory(prefix="lwrecipe-apt-") as tmp:
        status = Path(tmp, "status")
        status.write_text(
            "".join(
                f"Package: {p.name}\nStatus: install ok installed\nVersion: {p.version}\nArchitecture: {p.arch}\n\n"
                for p in installed
            )
        )
        Path(tmp, "archives", "partial").mkdir(parents=True)
        argv = [
            "apt-get",
            "install",
            "--print-uris",
            "-qq",
            "--no-install-recommends",
            "-o",
            f"Dir::State::status={status}",
            "-o",
            f"Dir::Cache::archives={tmp}/archives/",
            "-o",
            "Acquire::ForceHash=SHA256",
            "-o",
            "Debug::NoLocking=1",
        ]
        if arch:
            argv += ["-o", f"APT::Architecture={arch}"]
        proc = subprocess.run(
            argv + wanted,
            capture_output=True,
            text=True,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
        )
    if proc.returncode != 0:
        reason = next(
            (line[3:] for line in proc.stderr.splitlines() if line.startswith("E: ")),
            proc.stderr.strip() or f"exit status {proc.returncode}",
        )
        raise LwrecipeError(f"debs: apt cannot resolve {' '.join(wanted)}: {reason}")
    pins = []
    for line in proc.stdout.splitlines():
        match = _URI_LINE.fullmatch(line.strip())
        if not match:
            continue
        name, version, rest = match["file"].split("_", 2)
        pins.append(
            DebPin(name, unquote(version), rest.removesuffix(".deb"), match["url"], match["sha"], int(match["size"]))
        )
    if not pins:
        raise LwrecipeError(f"debs: apt resolved {' '.join(wanted)} to nothing: {proc.stdout.strip()[:200]}")
    return sorted(pins, key=lambda p: p.name)
