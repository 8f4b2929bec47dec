"""Host tools: finding them on PATH and fingerprinting them for the build key.

A fingerprint is the sha256 of the resolved executable plus the first line its
`--version` prints. Each tool is fingerprinted once per process.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .keys import Sha256, ToolPin
from .store import file_sha256

DEBIAN_PACKAGES = {
    "as": "binutils", "awk": "gawk", "ar": "binutils", "strip": "binutils", "chmod": "coreutils", "mkdir": "coreutils", "env": "coreutils", "bash": "bash", "bc": "bc", "bison": "bison", "bzip2": "bzip2",
    "c++": "g++", "cc": "gcc", "clang-16": "clang-16", "cmake": "cmake", "cp": "coreutils",
    "cpio": "cpio", "diff": "diffutils", "find": "findutils", "flex": "flex", "g++": "g++",
    "gcc": "gcc", "git": "git", "grep": "grep", "gzip": "gzip", "ld": "binutils",
    "ld.lld-16": "lld-16", "make": "make", "ninja": "ninja-build", "node": "nodejs",
    "patch": "patch", "perl": "perl", "python3": "python3", "rsync": "rsync", "sed": "sed",
    "tar": "tar", "wasm-ld-16": "lld-16", "xz": "xz-utils", "zstd": "zstd",
    "llvm-ar-16": "llvm-16", "llvm-ranlib-16": "llvm-16", "llvm-nm-16": "llvm-16",
    "openssl": "openssl", "file": "file", "unzip": "unzip", "zip": "zip",
}


@dataclass(frozen=True)
class HostTool:
    name: str
    path: Path  # the resolved executable
    sha256: Sha256
    version: str

    def pin(self) -> ToolPin:
        return ToolPin(self.name, self.sha256, self.version)


def target_platform() -> str:
    return f"{platform.machine()}-linux"


def debian_package(tool: str) -> str | None:
    return DEBIAN_PACKAGES.get(tool)


def fingerprint(name: str, search_path: str | None = None) -> HostTool | None:
    """The tool as found on PATH (or `search_path`), or None when it is missing."""
    found = shutil.which(name, path=search_path if search_path is not None else os.environ.get("PATH", ""))
    if found is None:
        return None
    resolved = Path(found).resolve()
    st = resolved.stat()
    sha256, version = _identify(resolved, st.st_size, st.st_mtime_ns, found)
    return HostTool(name=name, path=resolved, sha256=sha256, version=version)


@cache
def _identify(path: Path, size: int, mtime_ns: int, invoked: str) -> tuple[Sha256, str]:
    """Hash and version of one executable; (size, mtime) make a changed file a new entry.
    The version is asked of the name found on PATH, as multi-call programs read argv[0]."""
    return file_sha256(path), _version_line(Path(invoked))


def _version_line(path: Path) -> str:
    """The first non-empty line of `tool --version`; tools that have no such flag give ''."""
    try:
        proc = subprocess.run([str(path), "--version"], stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=10, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
    except (OSError, subprocess.TimeoutExpired):
        return ""
    for stream in (proc.stdout, proc.stderr):
        for line in stream.decode("utf-8", "replace").splitlines():
            if line.strip():
                return line.strip()[:200]
    return ""
