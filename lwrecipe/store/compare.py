"""Explaining why two outputs of one recipe differ, for `build --check`.

Compares two restored output trees entry by entry (type, mode, link target,
size, sha256) and adds a short unified diff for text files; `diffoscope` on the
two archives goes deeper when it is installed. Reading only: nothing is stored.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import zstandard

from ..core.digests import Sha256
from .store import Store

DIFF_LINES = 20  # of unified diff per text file
MAX_FILES = 20  # files reported in detail
TEXT_LIMIT = 1 << 20  # larger files are not diffed line by line
DIFFOSCOPE_LINES = 60


@dataclass(frozen=True)
class Entry:
    kind: str  # "file" | "dir" | "symlink"
    mode: int
    size: int
    digest: str  # sha256 of a file, the target of a symlink, "" for a directory


def entries(root: Path) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = Entry("symlink", 0o777, 0, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = Entry("dir", stat.S_IMODE(st.st_mode), 0, "")
            else:
                with path.open("rb") as fh:
                    digest = hashlib.file_digest(fh, "sha256").hexdigest()
                out[rel] = Entry("file", stat.S_IMODE(st.st_mode), st.st_size, digest)
    return out


def _describe(e: Entry) -> str:
    if e.kind == "file":
        return f"file {e.mode:04o} {e.size} bytes sha256 {e.digest[:16]}"
    if e.kind == "symlink":
        return f"symlink -> {e.digest}"
    return f"dir {e.mode:04o}"


def _text(path: Path) -> list[str] | None:
    if path.stat().st_size > TEXT_LIMIT:
        return None
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode().splitlines()
    except UnicodeDecodeError:
        return None


def tree_differences(first: Path, second: Path) -> list[str]:
    """Human-readable lines, one group per differing path (first = the cached output)."""
    a, b = entries(first), entries(second)
    lines: list[str] = []
    changed = sorted(p for p in a.keys() | b.keys() if a.get(p) != b.get(p))
    for rel in changed[:MAX_FILES]:
        old, new = a.get(rel), b.get(rel)
        if old is None:
            lines.append(f"{rel}: only in the rebuild: {_describe(b[rel])}")
            continue
        if new is None:
            lines.append(f"{rel}: only in the cached output: {_describe(old)}")
            continue
        lines.append(f"{rel}: {_describe(old)} -> {_describe(new)}")
        if old.kind == new.kind == "file":
            old_text, new_text = _text(first / rel), _text(second / rel)
            if old_text is not None and new_text is not None:
                diff = list(difflib.unified_diff(old_text, new_text, f"cached/{rel}", f"rebuild/{rel}", lineterm=""))
                lines += ["  " + d for d in diff[:DIFF_LINES]]
                if len(diff) > DIFF_LINES:
                    lines.append(f"  ... {len(diff) - DIFF_LINES} more diff lines")
    if len(changed) > MAX_FILES:
        lines.append(f"... and {len(changed) - MAX_FILES} more differing paths")
    return lines


def decompress(store: Store, blob: Sha256, dest: Path) -> Path:
    with store.path("cas", blob).open("rb") as src, dest.open("wb") as out:
        zstandard.ZstdDecompressor().copy_stream(src, out)
    return dest


def diffoscope(first_tar: Path, second_tar: Path) -> list[str]:
    """diffoscope's text report, shortened; empty when it is not installed."""
    tool = shutil.which("diffoscope")
    if tool is None:
        return []
    proc = subprocess.run(
        [tool, "--text", "-", str(first_tar), str(second_tar)], capture_output=True, text=True, errors="replace"
    )
    out = proc.stdout.splitlines()
    shown = out[:DIFFOSCOPE_LINES]
    if len(out) > DIFFOSCOPE_LINES:
        shown.append(f"... {len(out) - DIFFOSCOPE_LINES} more lines from diffoscope")
    return ["diffoscope:"] + ["  " + line for line in shown]
