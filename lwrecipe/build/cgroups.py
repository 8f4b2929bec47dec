"""Memory and process limits of a build through a cgroup of its own (`build
--max-memory`, `--max-procs`): made under lwrecipe's own cgroup, the build's
process tree put in it before it runs, watched for OOM kills and refused forks,
killed as a whole and removed afterwards.

cgroup v1 (a `memory` and a `pids` hierarchy) needs the right to make
directories there (root); cgroup v2 needs lwrecipe's cgroup delegated with the
`memory` and `pids` controllers enabled for its children. Where neither holds,
`probe` says why and the limits are not enforced (the caller says so once).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

ROOT_ENV = "LWRECIPE_CGROUP_ROOT"  # where the cgroup file systems are mounted (default /sys/fs/cgroup)
CONTROLLERS = ("memory", "pids")


def _root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or "/sys/fs/cgroup")


def _own_paths() -> dict[str, str]:
    """This process's cgroup per v1 controller, and under "" its v2 cgroup."""
    paths: dict[str, str] = {}
    try:
        text = Path("/proc/self/cgroup").read_text()
    except OSError:
        return paths
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path.lstrip("/")
    return paths


@dataclass(frozen=True)
class Support:
    """Where a build's cgroup is made: v1, one parent per controller; v2, one parent."""

    version: int | None
    parents: dict[str, Path] = field(default_factory=dict)  # controller -> parent directory
    why: str = ""  # why the limits cannot be enforced (version None)

    @property
    def enforceable(self) -> bool:
        return self.version is not None


@cache
def probe() -> Support:
    """Whether this process can make cgroups with memory and pids limits, tried
    for real (a directory made and removed)."""
    root, own = _root(), _own_paths()
    if all(c in own for c in CONTROLLERS) and all((root / c).is_dir() for c in CONTROLLERS):
        parents = {c: root / c / own[c] for c in CONTROLLERS}
        version = 1
    elif "" in own and (root / "cgroup.controllers").is_file():
        parent = root / own[""]
        parents = {c: parent for c in CONTROLLERS}
        version = 2
        try:
            enabled = (parent / "cgroup.subtree_control").read_text().split()
            if not all(c in enabled for c in CONTROLLERS):
                (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in CONTROLLERS))
        except OSError as exc:
            return Support(
                None,
                why=f"cgroup v2: the memory and pids controllers are not delegated to {parent} ({exc.strerror or exc})",
            )
    else:
        return Support(None, why=f"no cgroup v1 memory and pids hierarchies or cgroup v2 at {root}")
    for parent in set(parents.values()):
        trial = parent / f"lwrecipe-probe-{os.getpid()}"
        try:
            trial.mkdir()
            trial.rmdir()
        except OSError as exc:
            return Support(None, why=f"cannot make a cgroup in {parent} ({exc.strerror or exc})")
    return Support(version, parents)


class Cgroup:
    """One build's cgroup (one directory per v1 hierarchy), made with its limits."""

    def __init__(self, support: Support, max_memory: int | None, max_procs: int | None) -> None:
        self.support = support
        name = f"lwrecipe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.dirs = {c: p / name for c, p in support.parents.items()}
        made: list[Path] = []
        try:
            for path in dict.fromkeys(self.dirs.values()):
                path.mkdir()
                made.append(path)
            v1 = support.version == 1
            if max_memory is not None:
                memory = self.dirs["memory"]
                (memory / ("memory.limit_in_bytes" if v1 else "memory.max")).write_text(str(max_memory))
                swap = memory / ("memory.memsw.limit_in_bytes" if v1 else "memory.swap.max")
                if swap.exists():  # no way around the limit through swap
                    swap.write_text(str(max_memory if v1 else 0))
            if max_procs is not None:
                (self.dirs["pids"] / "pids.max").write_text(str(max_procs))
        except OSError:
            for path in reversed(made):
                path.rmdir()
            raise

    # The shell that joins the cgroup and becomes the build: it writes its own pid
    # into each cgroup.procs, then execs the command, so the build starts inside.
    JOIN = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 126; shift; n=$((n - 1)); done; exec "$@"'

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run inside the cgroup: a shell writes its pid into the cgroup and
        execs it. No Python runs between fork and exec (a preexec_fn would, which is
        unsafe with threads and makes subprocess fork instead of vfork)."""
        procs = [str(path / "cgroup.procs") for path in dict.fromkeys(self.dirs.values())]
        return ["/bin/sh", "-c", self.JOIN, "lwrecipe-cgroup", str(len(procs)), *procs, *argv]

    def _counter(self, controller: str, file: str, key: str) -> int:
        try:
            for line in (self.dirs[controller] / file).read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of the build for memory."""
        file = "memory.oom_control" if self.support.version == 1 else "memory.events"
        return self._counter("memory", file, "oom_kill") > 0

    def procs_refused(self) -> bool:
        """Whether a fork of the build was refused at the process limit."""
        return self._counter("pids", "pids.events", "max") > 0

    def kill(self) -> None:
        """SIGKILL every process in the cgroup until none is left (forks racing the
        kill are caught by the next round)."""
        for _ in range(100):
            pids = self._procs()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def _procs(self) -> list[int]:
        found: set[int] = set()
        for path in dict.fromkeys(self.dirs.values()):
            try:
                found.update(int(p) for p in (path / "cgroup.procs").read_text().split())
            except OSError:
                continue
        return sorted(found)

    def remove(self) -> None:
        """Kill what is left and remove the cgroup's directories."""
        self.kill()
        for path in dict.fromkeys(self.dirs.values()):
            for _ in range(200):  # a killed process leaves the cgroup a moment after it dies
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        raise
                    self.kill()
                    time.sleep(0.01)
