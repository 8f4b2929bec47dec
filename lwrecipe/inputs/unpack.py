"""Safe unpacking of untrusted archives into a source tree.

tar (plain, gzip, bzip2, xz, zstd) and zip, recognised by their bytes, not their
names. Builds on tarfile's `data` extraction filter (PEP 706) and adds what it
lacks: setuid/setgid bits are refused rather than cleared, every zip entry gets
the same checks, and the result does not depend on the host umask. Any refusal
raises UnsafeArchive and names the entry.
"""

from __future__ import annotations

import copy
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from .. import faults
from ..errors import UnsafeArchive

MAGIC = [(b"\x1f\x8b", "gz"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zst"),
         (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip")]


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


def unpack(archive: Path, dest: Path, strip: int = 0, label: str | None = None) -> None:
    """Unpack `archive` into `dest` (created if missing), or copy it there when it is
    not an archive. `label` names the source in errors."""
    label = label or archive.name
    dest.mkdir(parents=True, exist_ok=True)
    kind = archive_kind(archive)
    if kind is None:
        raise UnsafeArchive(f"{label}: not an archive (use unpack = false for plain files)")
    if kind == "zip":
        _unpack_zip(archive, dest, strip, label)
    elif kind == "zst":
        with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=".unzstd-") as tmp:
            import zstandard

            with archive.open("rb") as src:
                zstandard.ZstdDecompressor().copy_stream(src, tmp)
            tmp.flush()
            _unpack_tar(Path(tmp.name), dest, strip, label)
    else:
        _unpack_tar(archive, dest, strip, label)
    faults.point("unpack")
    normalise_tree(dest)


def _unpack_tar(archive: Path, dest: Path, strip: int, label: str) -> None:
    linkable: set[str] = set()  # regular files (and links to them) unpacked so far
    directories: set[str] = set()

    def guard(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        _check_name(label, member.name)
        if member.isdev() or member.isfifo():
            raise UnsafeArchive(f"{label}: {member.name!r}: device or fifo entries are refused")
        if member.mode & (stat.S_ISUID | stat.S_ISGID):
            raise UnsafeArchive(f"{label}: {member.name!r}: setuid/setgid bits are refused")
        name = strip_name(member.name, strip)
        if name is None:
            return None
        # When tarfile cannot make a link it extracts the link's target member in its
        # place, and it recursed forever on a symlink to itself over a directory, or
        # on a hardlink to itself or in a cycle: such entries are refused first.
        if member.isdir():
            directories.add(name)
        elif name in directories:
            raise UnsafeArchive(f"{label}: {member.name!r}: replaces a directory of the same name")
        changes: dict[str, object] = {"name": name, "uid": 0, "gid": 0, "uname": "", "gname": ""}
        if member.islnk():
            _check_name(label, member.linkname)
            target = strip_name(member.linkname, strip)
            if target is None:
                raise UnsafeArchive(f"{label}: {member.name!r}: hardlink to a stripped entry")
            if target not in linkable:
                raise UnsafeArchive(f"{label}: {member.name!r}: hardlink to {target!r}, not an earlier file")
            changes["linkname"] = target
        member = _replaced(member, changes)
        member = data_filter(member, path, label)
        if member.isreg() or member.islnk():
            linkable.add(member.name)
        else:
            linkable.discard(member.name)
        return member

    try:
        with tarfile.open(archive, "r:*", errorlevel=2) as tar:  # an entry that cannot be made is an error,
            extract_all(tar, dest, guard)                           # never silently left out
    except (tarfile.TarError, EOFError, OSError, KeyError) as exc:  # KeyError: a hardlink to a missing member
        if isinstance(exc, UnsafeArchive):
            raise
        raise UnsafeArchive(f"{label}: cannot unpack: {exc}") from None
    except RecursionError:  # the fallback above, for links the checks cannot foresee (a symlink
        # that cannot be made below a file, naming itself): the archive is malformed
        raise UnsafeArchive(f"{label}: cannot unpack: link entries that lead back to themselves") from None


# PEP 706's extraction filters came in Python 3.11.4; Debian 12's python3 is 3.11.2.
# Where they are missing, lwrecipe applies its own version of the `data` filter, with
# the same refusals, and extracts member by member. Both paths are tested (tests run
# the unpacking tests under the system's Python too).
_NATIVE_FILTERS = hasattr(tarfile, "data_filter")


def _replaced(member: tarfile.TarInfo, changes: dict[str, object]) -> tarfile.TarInfo:
    if _NATIVE_FILTERS:
        return member.replace(**changes, deep=False)  # type: ignore[arg-type]
    new = copy.copy(member)
    for key, value in changes.items():
        setattr(new, key, value)
    return new


def data_filter(member: tarfile.TarInfo, dest: str, label: str) -> tarfile.TarInfo:
    """tarfile's `data` filter, or where this Python has none, the same checks here;
    a refusal is UnsafeArchive naming the entry."""
    if _NATIVE_FILTERS:
        try:
            return tarfile.data_filter(member, dest)
        except tarfile.FilterError as exc:
            raise UnsafeArchive(f"{label}: {member.name!r}: {exc}") from None
    root = os.path.realpath(dest)

    def inside(path: str) -> bool:
        return os.path.commonpath([root, os.path.realpath(path)]) == root

    name = member.name
    if name.startswith("/") or not inside(os.path.join(root, name)):
        raise UnsafeArchive(f"{label}: {name!r}: would be extracted outside the destination")
    if member.islnk() or member.issym():
        if os.path.isabs(member.linkname):
            raise UnsafeArchive(f"{label}: {name!r}: is a link to an absolute path")
        base = os.path.dirname(name) if member.issym() else ""
        if not inside(os.path.join(root, base, member.linkname)):
            raise UnsafeArchive(f"{label}: {name!r}: would link to {member.linkname!r}, outside the destination")
    owner = {"uid": 0, "gid": 0, "uname": "", "gname": ""}  # older tarfile needs values, not None
    if member.isreg() or member.islnk():
        mode = member.mode & 0o755
        mode = mode if mode & 0o100 else mode & ~0o111  # executable for others only if for the owner
        return _replaced(member, {"mode": mode, **owner})
    if member.isdir() or member.issym():
        return _replaced(member, {"mode": 0o755 if member.isdir() else 0o777, **owner})
    raise UnsafeArchive(f"{label}: {name!r}: is a special file")


def extract_all(tar: tarfile.TarFile, dest: Path, guard: Any) -> None:
    """TarFile.extractall with `guard` as its filter, on every Python lwrecipe runs on."""
    if _NATIVE_FILTERS:
        tar.extractall(dest, filter=guard)
        return
    for member in tar:
        kept = guard(member, str(dest))
        if kept is not None:
            tar.extract(kept, dest)


def _unpack_zip(archive: Path, dest: Path, strip: int, label: str) -> None:
    root = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _check_name(label, info.filename)
                mode = info.external_attr >> 16
                if mode & (stat.S_ISUID | stat.S_ISGID):
                    raise UnsafeArchive(f"{label}: {info.filename!r}: setuid/setgid bits are refused")
                if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
                    raise UnsafeArchive(f"{label}: {info.filename!r}: device or fifo entries are refused")
                name = strip_name(info.filename.rstrip("/"), strip)
                if name is None:
                    continue
                target = dest / name
                if not _inside(root, target.parent) or not _inside(root, target):
                    raise UnsafeArchive(f"{label}: {info.filename!r}: would be written outside the tree")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if stat.S_ISLNK(mode):
                    link = zf.read(info).decode()
                    if link.startswith("/") or not _inside(root, target.parent / link):
                        raise UnsafeArchive(f"{label}: {info.filename!r}: symlink points outside the tree")
                    os.symlink(link, target)
                    continue
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                os.chmod(target, 0o755 if mode & 0o111 else 0o644)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnsafeArchive(f"{label}: cannot unpack: {exc}") from None


def symlink_on_the_way(base: Path, parts: Iterable[str]) -> Path | None:
    """The first of base/a, base/a/b, ... (for parts a, b, ...) that is a symlink, or None:
    what would be written through a link someone else left there."""
    path = base
    for part in parts:
        path = path / part
        if path.is_symlink():
            return path
    return None


def _inside(root: Path, path: Path | str) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(root)


def normalise_tree(root: Path) -> None:
    """Directories 0755, files 0755 or 0644: the tree no longer depends on the umask."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, 0o755)
        for name in filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                os.chmod(p, 0o755 if st.st_mode & 0o100 else 0o644)
    os.chmod(root, 0o755)
