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
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreError
from ..files import fsync_dir, replace_text
from ..store.store import Store
from .gitsrc import ensure_commit
from .mirrors import Mirrors
from .sources import Fetch

SUMS = "SHA256SUMS"


@dataclass(frozen=True)
class Exported:
    label: str  # where the input is declared
    name: str  # the file written, in the directory
    size: int
    written: bool  # False: the directory already held these bytes
    note: str = ""


def export(fetched: Fetch, store: Store, directory: Path, mirrors: Mirrors = Mirrors(),
           offline: bool = False) -> list[Exported]:
    directory.mkdir(parents=True, exist_ok=True)
    sums = _read_sums(directory / SUMS)
    rows = []
    try:
        for f in sorted(fetched.files.values(), key=lambda f: f.wanted.label):
            sha, name = f.wanted.sha256, f.wanted.basename
            written = _place(f.path, directory / sha, sha)
            note = ""
            taken = (directory / name).exists() and _sha256_of(directory / name) != sha  # a file of someone else's
            if sums.get(name, sha) == sha and not taken and name not in (sha, SUMS) and not name.startswith("."):
                _link(directory / sha, directory / name)
                sums[name] = sha
            else:
                note = f"the name {name} is another file's here; by sha256 only"
            sums[sha] = sha
            rows.append(Exported(f.wanted.label, sha if note else name, f.size, written, note))
        for tree in sorted(fetched.trees.values(), key=lambda t: t.label):
            commit = ensure_commit(store, tree.label, tree.url, tree.rev, offline, mirrors)
            tar = f"git-{tree.rev}.tar"
            written = _place(tree.path, directory / tar, tree.sha256)
            replace_text(directory / f"git-{tree.rev}.commit", commit)
            sums[tar] = tree.sha256
            rows.append(Exported(tree.label, tar, tree.path.stat().st_size, written))
        replace_text(directory / SUMS, "".join(f"{sha}  {name}\n" for name, sha in sorted(sums.items())))
        fsync_dir(directory)
    except OSError as exc:
        raise StoreError(f"{directory}: cannot write the mirror: {exc.strerror or exc}") from None
    return rows


def _read_sums(path: Path) -> dict[str, str]:
    """name -> sha256 of an existing SHA256SUMS (so a second export adds to it)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return {}
    sums = {}
    for line in text.splitlines():
        digest, _, name = line.partition(" ")
        name = name.strip().lstrip("*")
        if len(digest) == 64 and name and "/" not in name:
            sums[name] = digest.lower()
    return sums


def _sha256_of(path: Path) -> str | None:
    try:
        with path.open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except FileNotFoundError:
        return None


def _place(source: Path, dest: Path, sha: str) -> bool:
    """Copy `source` (bytes whose sha256 is `sha`) to `dest` unless it holds them already."""
    if _sha256_of(dest) == sha:
        return False
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(source, tmp)
    tmp.chmod(0o644)
    os.replace(tmp, dest)
    return True


def _link(target: Path, name: Path) -> None:
    """`name` as a second name of `target`'s bytes (a copy where links cannot be made)."""
    if name.exists() and os.path.samefile(name, target):
        return
    tmp = name.with_name(f".{name.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(target, tmp)
    except OSError:
        shutil.copyfile(target, tmp)
    os.replace(tmp, name)
