"""Applying a recipe's patch series with GNU patch, strictly.

Every path a patch names is checked before patch runs (no absolute paths, no
`..` after stripping), and patch runs in batch mode with --fuzz=0: a patch that
needs fuzz is an error, since fuzz makes the result depend on context.
"""

from __future__ import annotations

import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..core import faults
from ..core.errors import BuildFailed, UnsafeArchive
from ..core.safefs import Beneath, parts_of

_HEADER = re.compile(r"^(?:---|\+\+\+) (\S+)", re.M)
_GIT_HEADER = re.compile(r"^diff --git (\S+) (\S+)", re.M)
_RENAME = re.compile(r"^(?:rename|copy) (?:from|to) (.+)$", re.M)


@dataclass(frozen=True)
class PatchFile:
    label: str  # e.g. "patches[0] (patches/busybox/0002-x.patch)"
    path: Path
    strip: int


def touched_paths(text: str, strip: int) -> list[str]:
    """The tree paths a unified or git diff writes, after dropping `strip` components."""
    names = _HEADER.findall(text) + [n for pair in _GIT_HEADER.findall(text) for n in pair]
    out = []
    for name in names:
        if name == "/dev/null":
            continue
        parts = PurePosixPath(name).parts
        out.append(name if name.startswith("/") else "/".join(parts[strip:]))
    out += _RENAME.findall(text)
    return out


def check_paths(label: str, text: str, strip: int) -> None:
    for name in touched_paths(text, strip):
        if name.startswith("/"):
            raise UnsafeArchive(f"{label}: writes to the absolute path {name!r}")
        if ".." in PurePosixPath(name).parts:
            raise UnsafeArchive(f"{label}: writes outside the tree through {name!r}")


def patch_argv(patch_tool: str, strip: int, tree: str, file: str) -> list[str]:
    """GNU patch, strictly: no fuzz, no backups, no reject files, never reversed."""
    return [
        patch_tool,
        "--batch",
        "--forward",
        "--fuzz=0",
        "--no-backup-if-mismatch",
        "-r",
        "-",
        f"-p{strip}",
        "-d",
        tree,
        "-i",
        file,
    ]


def check_series(recipe: str, patches: list[PatchFile]) -> None:
    for patch in patches:
        check_paths(f"{recipe}: {patch.label}", patch.path.read_text(encoding="utf-8", errors="replace"), patch.strip)


def check_no_links(label: str, text: str, strip: int, tree: Path) -> None:
    """No path the patch writes is, or goes through, a link in `tree` (checked with
    lstat below a held directory, never following one): GNU patch since 2.7.4 refuses
    such paths itself, but the host's patch is whatever the host has."""
    with Beneath(tree) as root:
        for name in touched_paths(text, strip):
            parts = parts_of(name)
            for i in range(1, len(parts) + 1):
                try:
                    st = root.lstat("/".join(parts[:i]))
                except OSError:  # a file on the way: patch fails on its own
                    break
                if st is None:
                    break
                if stat.S_ISLNK(st.st_mode):
                    what = "is a symlink" if i == len(parts) else f"goes through the symlink {'/'.join(parts[:i])}"
                    raise UnsafeArchive(f"{label}: {name} {what}; a patch is never applied through a link")


def apply_series(recipe: str, patches: list[PatchFile], tree: Path, patch_tool: str = "patch") -> None:
    """Apply `patches` on the host, each checked first against its paths and the links
    the tree holds (after the patches before it)."""
    for patch in patches:
        check_series(recipe, [patch])
        check_no_links(
            f"{recipe}: {patch.label}", patch.path.read_text(encoding="utf-8", errors="replace"), patch.strip, tree
        )
        proc = subprocess.run(
            patch_argv(patch_tool, patch.strip, str(tree), str(patch.path)),
            capture_output=True,
            text=True,
            env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"},
        )
        if proc.returncode != 0:
            raise not_applied(recipe, patch, proc.stdout + proc.stderr)
        faults.point("patch")


def not_applied(recipe: str, patch: PatchFile, output: str) -> BuildFailed:
    return BuildFailed(recipe, f"{patch.label} does not apply: {_failure(output)}")


def _failure(output: str) -> str:
    """The first failing file and hunk from patch's output."""
    current = ""
    for line in output.splitlines():
        if line.startswith("patching file "):
            current = line.removeprefix("patching file ").strip("'")
        elif (
            "FAILED" in line
            or "can't find file" in line
            or "malformed" in line.lower()
            or "Reversed" in line
            or "fuzz" in line
        ):
            return f"{current}: {line.strip()}" if current else line.strip()
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "patch failed"
