"""Host tools: finding them on PATH and fingerprinting them for the build key.

A fingerprint is the sha256 of the resolved executable plus the first line its
`--version` prints. Fingerprints are remembered across runs in a small file
keyed by the executable's path, size, mtime, ctime and inode, so a cached build
runs no `--version` and hashes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import selectors
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.digests import Sha256
from ..core.files import TOOL_CACHE_ENV, replace_text, user_cache_dir
from ..recipes.keys import ToolPin
from ..store.store import file_sha256

COREUTILS = (
    "basename",
    "cat",
    "chmod",
    "cp",
    "cut",
    "date",
    "dd",
    "dirname",
    "echo",
    "env",
    "expr",
    "head",
    "install",
    "ln",
    "ls",
    "mkdir",
    "mktemp",
    "mv",
    "od",
    "printf",
    "readlink",
    "realpath",
    "rm",
    "sleep",
    "sort",
    "tail",
    "touch",
    "tr",
    "uname",
    "uniq",
    "wc",
)
DEBIAN_PACKAGES = {
    **{tool: "coreutils" for tool in COREUTILS},
    "as": "binutils",
    "ar": "binutils",
    "ld": "binutils",
    "strip": "binutils",
    "awk": "mawk",
    "bash": "bash",
    "sh": "dash",
    "bc": "bc",
    "bison": "bison",
    "bzip2": "bzip2",
    "c++": "g++",
    "cc": "gcc",
    "clang-16": "clang-16",
    "cmake": "cmake",
    "cmp": "diffutils",
    "cpio": "cpio",
    "diff": "diffutils",
    "file": "file",
    "find": "findutils",
    "xargs": "findutils",
    "flex": "flex",
    "g++": "g++",
    "gcc": "gcc",
    "git": "git",
    "grep": "grep",
    "gzip": "gzip",
    "ld.lld-16": "lld-16",
    "llvm-ar-16": "llvm-16",
    "llvm-nm-16": "llvm-16",
    "llvm-ranlib-16": "llvm-16",
    "make": "make",
    "ninja": "ninja-build",
    "node": "nodejs",
    "openssl": "openssl",
    "patch": "patch",
    "perl": "perl",
    "python3": "python3",
    "rsync": "rsync",
    "sed": "sed",
    "tar": "tar",
    "unzip": "unzip",
    "wasm-ld-16": "lld-16",
    "xz": "xz-utils",
    "zip": "zip",
    "zstd": "zstd",
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
    search = search_path if search_path is not None else os.environ.get("PATH", "")
    # Only absolute entries: a relative one (or an empty one, which means ".") would
    # find a file of the project the user stands in, and its --version runs on the host.
    search = os.pathsep.join(d for d in search.split(os.pathsep) if os.path.isabs(d))
    found = _which(name, search)
    if found is None:
        return None
    resolved = Path(found).resolve()
    try:
        st = resolved.stat()
    except FileNotFoundError:  # removed since it was looked up
        _FOUND.pop((name, search), None)
        return fingerprint(name, search_path)
    sha256, version = _MEMO.identify(resolved, found, st)
    return HostTool(name=name, path=resolved, sha256=sha256, version=version)


_FOUND: dict[tuple[str, str], str] = {}


def _which(name: str, search: str) -> str | None:
    """shutil.which, remembered per process when it finds something (a plan of
    thousands of recipes asks for the same few tools over and over)."""
    key = (name, search)
    found = _FOUND.get(key)
    if found is None:
        found = shutil.which(name, path=search)
        if found is not None:
            _FOUND[key] = found
    return found


def tool_cache_path() -> Path:
    if os.environ.get(TOOL_CACHE_ENV):
        return Path(os.environ[TOOL_CACHE_ENV])
    return user_cache_dir() / "host-tools.json"


MEMO_LIMIT = 2000


class _Memo:
    """Fingerprints by (invoked name, executable, size, mtime, ctime, inode), kept in
    a JSON file. A lost or unreadable file only costs re-fingerprinting."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, list[str]] | None = None

    def _load(self) -> dict[str, list[str]]:
        if self._entries is None:
            try:
                data = json.loads(tool_cache_path().read_text())
                self._entries = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self._entries = {}
        return self._entries

    def identify(self, path: Path, invoked: str, st: os.stat_result) -> tuple[Sha256, str]:
        """The version is asked of the name found on PATH, as multi-call programs read argv[0]."""
        key = "\0".join(map(str, (invoked, path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)))
        with self._lock:
            known = self._load().get(key)
            if isinstance(known, list) and len(known) == 2:
                return Sha256(known[0]), known[1]
            sha256, version = file_sha256(path), _version_line(Path(invoked))
            self._load()[key] = [sha256, version]
            self._save()
            return sha256, version

    def _save(self) -> None:
        assert self._entries is not None
        for stale in list(self._entries)[:-MEMO_LIMIT]:  # oldest first
            del self._entries[stale]
        with contextlib.suppress(OSError):  # a read-only home only costs speed
            replace_text(tool_cache_path(), json.dumps(self._entries))


_MEMO = _Memo()


VERSION_BYTES = 64 << 10  # of each stream: a first line is in there, a flood is not read
VERSION_SECONDS = 10


def _version_line(path: Path) -> str:
    """The first non-empty line of `tool --version` (stdout first), printable characters
    only; tools that have no such flag give ''. The tool runs on the host, so it gets
    no input, a fixed environment, at most VERSION_BYTES read of each stream and
    VERSION_SECONDS in all; then its process group is killed."""
    try:
        proc = subprocess.Popen(
            [str(path), "--version"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
            start_new_session=True,
        )
    except OSError:
        return ""
    try:
        streams = _read_capped(proc, VERSION_BYTES, VERSION_SECONDS)
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for stream in streams:
        for line in stream.decode("utf-8", "replace").splitlines():
            if line.strip():
                return "".join(c for c in line.strip() if c.isprintable() or c == "\t")[:200]
    return ""


def _read_capped(proc: subprocess.Popen[bytes], limit: int, seconds: float) -> tuple[bytes, bytes]:
    """What the process wrote to stdout and stderr, each up to `limit` bytes, until
    both end, both are full, stdout holds a whole non-empty line (which decides the
    answer), or `seconds` pass."""
    assert proc.stdout is not None and proc.stderr is not None
    got = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    deadline = time.monotonic() + seconds
    with selectors.DefaultSelector() as sel:
        for fd in got:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map() and (left := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(left):
                chunk = os.read(key.fd, 65536)
                got[key.fd] += chunk
                if not chunk or len(got[key.fd]) >= limit:
                    sel.unregister(key.fd)
            out = got[proc.stdout.fileno()]
            if b"\n" in out and out[: out.rindex(b"\n")].strip():
                break
    return bytes(got[proc.stdout.fileno()][:limit]), bytes(got[proc.stderr.fileno()][:limit])
