"""`mirror export`: every input of some recipes, written into a mirror directory.

The directory then serves an air-gapped build as LWRECIPE_MIRRORS (or `[mirrors]
files`) with --offline (Buildroot's `make source`, Yocto's own mirrors):

- each download as `<sha256>` and, where no other file has taken the name, as its
  file name (a hard link to the same bytes), both listed in `SHA256SUMS`;
- each git source's canonical tree as `git-<rev>.tar` with the commit object as
  `git-<rev>.commit`, which is what lets a reader verify the tree by commit.

Files are written under a temporary name and renamed, so an interrupted export
leaves no half-written file under a real name; running it again completes it. A
file already there is kept when its bytes are the ones wanted.

The directory's contents are not lwrecipe's (it may be a project's `[mirrors] files`
directory), so everything below it goes through `safefs.Beneath`: temporary files
are created O_EXCL under a random name and chmodded by descriptor, renames are
between held directory descriptors (a link at a final name is replaced, never
followed), and what is already there is read without following a link — a link at
a download's name counts as another file's.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..core.errors import StoreError
from ..core.safefs import Beneath, LinkRefused
from ..store.store import Store
from .gitsrc import ensure_commit
from .mirrors import Mirrors
from .sources import Fetch

SUMS = "SHA256SUMS"
MAX_SUMS = 64 << 20  # an existing SHA256SUMS read back, at most
CHUNK = 1 << 20


@dataclass(frozen=True)
class Exported:
    label: str  # where the input is declared
    name: str  # the file written, in the directory
    size: int
    written: bool  # False: the directory already held these bytes
    note: str = ""


def export(
    fetched: Fetch, store: Store, directory: Path, mirrors: Mirrors = Mirrors(), offline: bool = False
) -> list[Exported]:
    rows = []
    try:
        with Beneath(directory, create=True) as out:
            sums = _read_sums(out, directory)
            for f in sorted(fetched.files.values(), key=lambda f: f.wanted.label):
                sha, name = f.wanted.sha256, f.wanted.basename
                written = _place(out, f.path, sha, sha)
                note = ""
                taken = _holds(out, name) not in (None, sha)  # a file of someone else's (or a link)
                if sums.get(name, sha) == sha and not taken and name not in (sha, SUMS) and not name.startswith("."):
                    _link(out, sha, name)
                    sums[name] = sha
                else:
                    note = f"the name {name} is another file's here; by sha256 only"
                sums[sha] = sha
                rows.append(Exported(f.wanted.label, sha if note else name, f.size, written, note))
            for tree in sorted(fetched.trees.values(), key=lambda t: t.label):
                commit = ensure_commit(store, tree.label, tree.url, tree.rev, offline, mirrors)
                tar = f"git-{tree.rev}.tar"
                written = _place(out, tree.path, tar, tree.sha256)
                _write_bytes(out, f"git-{tree.rev}.commit", commit)
                sums[tar] = tree.sha256
                rows.append(Exported(tree.label, tar, tree.path.stat().st_size, written))
            _write_bytes(out, SUMS, "".join(f"{sha}  {name}\n" for name, sha in sorted(sums.items())).encode())
            out.fsync()
    except OSError as exc:
        raise StoreError(f"{directory}: cannot write the mirror: {exc.strerror or exc}") from None
    return rows


def _open_regular(out: Beneath, name: str) -> int | None:
    """A read descriptor of the regular file `name` (None: missing); a link there is
    LinkRefused, anything else that is not a regular file (a FIFO) is refused unopened."""
    try:
        fd = out.open(name, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", name)
    return fd


def _read_sums(out: Beneath, directory: Path) -> dict[str, str]:
    """name -> sha256 of an existing SHA256SUMS (so a second export adds to it); a
    link there is replaced, never read."""
    try:
        fd = _open_regular(out, SUMS)
    except (LinkRefused, OSError):
        return {}
    if fd is None:
        return {}
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_SUMS + 1)
    if len(data) > MAX_SUMS:
        raise StoreError(f"{directory}/{SUMS}: more than {MAX_SUMS >> 20} MiB; refused")
    sums = {}
    for line in data.decode(errors="replace").splitlines():
        digest, _, name = line.partition(" ")
        name = name.strip().lstrip("*")
        if len(digest) == 64 and name and "/" not in name:
            sums[name] = digest.lower()
    return sums


def _holds(out: Beneath, name: str) -> str | None:
    """The sha256 of the regular file `name` (None: nothing there; "": a link, or not
    a regular file — something that is not lwrecipe's to replace by its name)."""
    try:
        fd = _open_regular(out, name)
    except OSError:  # LinkRefused included
        return ""
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _staged(out: Beneath, name: str, fill: Callable[[BinaryIO], None]) -> None:
    """Write `name` whole: a new file under a random name (O_EXCL, never through a
    link), filled, chmodded 0644 and synced by its descriptor, then renamed over
    `name` (whatever `name` is, a link included, is replaced as an entry)."""
    tmp = f".{name}.{secrets.token_hex(8)}.tmp"
    fd = out.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fill(fh)
            fh.flush()
            os.fchmod(fh.fileno(), 0o644)
            os.fsync(fh.fileno())
        out.replace(tmp, name)
    finally:
        out.unlink_file(tmp)


def _write_bytes(out: Beneath, name: str, data: bytes) -> None:
    def fill(fh: BinaryIO) -> None:
        fh.write(data)

    _staged(out, name, fill)


def _place(out: Beneath, source: Path, name: str, sha: str) -> bool:
    """Copy `source` (a store file whose sha256 is `sha`) to `name` unless it holds them already."""
    if _holds(out, name) == sha:
        return False

    def fill(fh: BinaryIO) -> None:
        with source.open("rb") as src:
            shutil.copyfileobj(src, fh, CHUNK)

    _staged(out, name, fill)
    return True


def _link(out: Beneath, target: str, name: str) -> None:
    """`name` as a second name of `target`'s bytes (a copy where links cannot be made);
    both are names in the directory, neither followed if a link."""
    have, want = out.lstat(name), out.lstat(target)
    if have is not None and want is not None and (have.st_dev, have.st_ino) == (want.st_dev, want.st_ino):
        return
    tmp = f".{name}.{secrets.token_hex(8)}.tmp"
    try:
        os.link(target, tmp, src_dir_fd=out.fd, dst_dir_fd=out.fd, follow_symlinks=False)
    except OSError:
        fd = _open_regular(out, target)
        if fd is None:
            raise FileNotFoundError(errno.ENOENT, "missing", target) from None
        with os.fdopen(fd, "rb") as src:
            _staged(out, name, lambda fh: shutil.copyfileobj(src, fh, CHUNK))
        return
    try:
        out.replace(tmp, name)
    finally:
        out.unlink_file(tmp)
