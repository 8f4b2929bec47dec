"""The build environment: fixed paths, a clean environment, no network (bubblewrap).

Inside the sandbox every machine sees the same paths: the source tree at
/build/src, the output at /build/out, HOME and TMPDIR under /build, each
dependency read-only at /deps/<name>, and /tmp is a directory on disk beside
the build (not memory). A recipe built on an environment gets that
environment's tree as its whole root file system, read-only, and runs as a fixed
user; the others see the host's /usr and /etc and a PATH holding only the
declared host tools. Without bubblewrap a host-tool build runs only when the user
asks for it (--no-sandbox), on host paths, and its record says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..core import faults
from ..core.errors import SandboxUnavailable
from .cgroups import Cgroup, probe
from .spawn import spawn
from .supervise import Limit, Limits, watch

BUILD = Path("/build")
CONTROL = ".lwrecipe"  # /build/.lwrecipe: lwrecipe's files, read-only inside
DEPS = Path("/deps")
ENV_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"
BUILD_USER = ("builder", 1000, 1000)  # name, uid, gid: the same on every machine, whoever runs lwrecipe
RESERVED_ROOTS = ("build", "deps", "dev", "proc", "tmp")  # made by the sandbox, never taken from an environment
HOST_READONLY = ("/usr",)
HOST_TOP_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
HOST_ETC = (
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "perl",
    "magic",
    "magic.mime",
    "mime.types",
    "ssl/certs",
    "protocols",
    "services",
    "locale.alias",
)
"""What of the host's /etc a build on host tools sees (read-only): what host tools
need to run (alternatives links, the dynamic linker's cache, public certificates),
never accounts, keys or host names. passwd, group, hosts and nsswitch.conf are
lwrecipe's own (synthetic_etc)."""


@dataclass(frozen=True)
class Layout:
    """A build's directories on the host. Only `work` is writable by the build (it is
    /build); lwrecipe's own files — the script, the tool links, the patches, the log —
    are beside it, never in it, so nothing the build or a source leaves there is ever
    read or written through by lwrecipe."""

    top: Path  # the build's own directory, made by lwrecipe

    @property
    def work(self) -> Path:
        return self.top / "work"  # bound at /build

    @property
    def control(self) -> Path:
        return self.top / "control"  # bound read-only at /build/.lwrecipe

    @property
    def log(self) -> Path:
        return self.top / "build.log"  # never visible inside the sandbox

    @property
    def src(self) -> Path:
        return self.work / "src"

    @property
    def out(self) -> Path:
        return self.work / "out"

    @property
    def home(self) -> Path:
        return self.work / "home"

    @property
    def tmp(self) -> Path:
        return self.work / "tmp"

    @property
    def sandbox_tmp(self) -> Path:
        return self.top / "tmp"  # bound at /tmp: on disk beside the build, not in memory

    @property
    def tools(self) -> Path:
        return self.control / "bin"

    @property
    def script(self) -> Path:
        return self.control / "script.sh"

    @property
    def patches(self) -> Path:
        return self.control / "patches"

    def create(self) -> None:
        for d in (self.src, self.out, self.home, self.tmp, self.tools, self.patches):
            d.mkdir(parents=True, exist_ok=True)
        self.sandbox_tmp.mkdir(mode=0o755, exist_ok=True)


@dataclass(frozen=True)
class Job:
    layout: Layout
    script: str
    env: Mapping[str, str]  # the recipe's env
    tools: Mapping[str, Path]  # tool name -> resolved host executable
    deps: Mapping[str, Path]  # dependency name -> host directory of its output
    jobs: int
    source_date_epoch: int
    root: Path | None = None  # an environment's tree: the build's root file system


def dep_var(name: str) -> str:
    return "LW_DEP_" + name.upper().replace("-", "_")


def environment(job: Job, sandboxed: bool) -> dict[str, str]:
    """Exactly the variables DESIGN.md lists, with in-sandbox or host paths."""
    lay = job.layout
    root = BUILD if sandboxed else lay.work
    host_path = str(BUILD / CONTROL / "bin") if sandboxed else str(lay.tools)  # the declared host tools only
    path = ENV_PATH if job.root is not None else host_path  # ENV_PATH: the environment's own programs
    env = {
        "PATH": path,
        "HOME": str(root / "home"),
        "TMPDIR": str(root / "tmp"),
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "SOURCE_DATE_EPOCH": str(job.source_date_epoch),
        "LW_OUT": str(root / "out"),
        "LW_SRC": str(root / "src"),
        "LW_JOBS": str(job.jobs),
    }
    for name, dep_path in job.deps.items():
        env[dep_var(name)] = str(DEPS / name) if sandboxed else str(dep_path)
    env.update(job.env)
    return env


def synthetic_etc(uid: int) -> dict[str, str]:
    """The accounts and names a build sees: root, nobody and the build's own user."""
    user = "" if uid == 0 else f"builder:x:{uid}:{uid}:builder:/build/home:/bin/sh\n"
    group = "" if uid == 0 else f"builder:x:{uid}:\n"
    nobody = "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    return {
        "passwd": f"root:x:0:0:root:/build/home:/bin/sh\n{user}{nobody}",
        "group": f"root:x:0:\n{group}nogroup:x:65534:\n",
        "hosts": "127.0.0.1\tlocalhost lwrecipe\n::1\tlocalhost\n",
        "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
    }


def prepare(job: Job) -> None:
    lay = job.layout
    lay.create()
    if job.root is None:
        etc = lay.control / "etc"
        etc.mkdir(exist_ok=True)
        for name, text in synthetic_etc(os.getuid()).items():
            (etc / name).write_text(text)
    for name, target in job.tools.items():
        link = lay.tools / name
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    lay.script.write_text(job.script)


def tool_prefixes(tools: Mapping[str, Path]) -> list[Path]:
    """Directories to bind read-only so that host tools installed outside /usr
    (pyenv's python3, /opt toolchains) run: the prefix above a tool's bin/."""
    prefixes: set[Path] = set()
    for target in tools.values():
        real = Path(os.path.realpath(target))
        if any(real.is_relative_to(top) for top in (*HOST_READONLY, *HOST_TOP_LINKS)):
            continue
        prefixes.add(real.parent.parent if real.parent.name == "bin" else real.parent)
    return sorted(p for p in prefixes if not any(p != q and p.is_relative_to(q) for q in prefixes))


def root_binds(root: Path) -> list[str]:
    """bubblewrap arguments that make `root` the whole file system, read-only: each
    top-level entry bound (or linked) at /, nothing of the host's."""
    argv = []
    for entry in sorted(os.listdir(root)):
        path = root / entry
        if entry in RESERVED_ROOTS:
            continue
        if path.is_symlink():
            argv += ["--symlink", os.readlink(path), f"/{entry}"]
        else:
            argv += ["--ro-bind", str(path), f"/{entry}"]
    return argv


def bwrap_argv(job: Job, bwrap: str, command: Sequence[str] | None = None) -> list[str]:
    """The sandbox of a build; `command` (default: the build script) is what runs in it."""
    argv = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--hostname", "lwrecipe"]
    if job.root is not None:
        _, uid, gid = BUILD_USER
        argv += ["--unshare-user", "--uid", str(uid), "--gid", str(gid), *root_binds(job.root)]
    # /tmp on disk beside the build (not memory), bound before a tool's prefix that may live under it
    argv += ["--proc", "/proc", "--dev", "/dev", "--bind", str(job.layout.sandbox_tmp), "/tmp"]
    if job.root is not None:
        return _finish(argv, job, command)
    for path in HOST_READONLY:
        argv += ["--ro-bind", path, path]
    for path in HOST_TOP_LINKS:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for prefix in tool_prefixes(job.tools):
        argv += ["--ro-bind", str(prefix), str(prefix)]
    argv += ["--dir", "/etc"]  # the probe below runs everything before this
    for name in HOST_ETC:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for name in synthetic_etc(0):
        argv += ["--ro-bind", str(job.layout.control / "etc" / name), f"/etc/{name}"]
    return _finish(argv, job, command)


def _finish(argv: list[str], job: Job, command: Sequence[str] | None = None) -> list[str]:
    """The build's own directories, its environment variables and the script."""
    argv += ["--bind", str(job.layout.work), str(BUILD), "--ro-bind", str(job.layout.control), str(BUILD / CONTROL)]
    for name, path in sorted(job.deps.items()):
        argv += ["--ro-bind", str(path), str(DEPS / name)]
    argv += ["--remount-ro", "/"]  # the root and what the sandbox made there (/etc, mount points) are read-only
    argv += ["--clearenv"]
    for key, value in sorted(environment(job, True).items()):
        argv += ["--setenv", key, value]
    argv += [
        "--chdir",
        str(BUILD / "src"),
        *(command or ["/bin/bash", "-euo", "pipefail", str(BUILD / CONTROL / "script.sh")]),
    ]
    return argv


# Without bubblewrap nothing ends the script when lwrecipe dies (bubblewrap has
# --die-with-parent), and the script is in its own session. So a watcher runs
# beside it: it blocks reading a pipe whose write end only lwrecipe holds, and
# when lwrecipe exits, however it exits, the read returns and the watcher kills
# the whole process group: the script and everything it started. $1 is the
# script, $2 the pipe's read end; the script itself does not get that fd.
_WATCHED = (
    '/bin/bash -euo pipefail "$1" {fd}<&- & script=$!\n'
    '{ read -r _ <&"$2"; kill -KILL 0; } & watcher=$!\n'
    'wait "$script"; status=$?\n'
    'kill "$watcher" 2>/dev/null\n'
    'exit "$status"'
)


def plain_argv(job: Job, watch_fd: int) -> list[str]:
    script = _WATCHED.replace("{fd}", str(watch_fd))
    return ["/bin/bash", "-c", script, "lwrecipe-build", str(job.layout.script), str(watch_fd)]


@cache
def bwrap_path() -> str | None:
    """bubblewrap, if it is installed and can create a sandbox on this machine."""
    found = shutil.which("bwrap")
    if not found:
        return None
    probe_job = Job(Layout(Path("/nonexistent")), "", {}, {}, {}, 1, 0)
    argv = bwrap_argv(probe_job, found)
    argv = argv[: argv.index("--dir")] + ["/usr/bin/true"]
    tmp = argv.index(str(probe_job.layout.sandbox_tmp))  # the probe has no build directory to bind
    del argv[tmp - 1 : tmp + 2]
    probe = subprocess.run(argv, capture_output=True)
    return found if probe.returncode == 0 else None


def require_sandbox(allow_none: bool) -> str | None:
    found = bwrap_path()
    if found is None and not allow_none:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is missing or cannot create a sandbox here; install it with "
            "`apt-get install bubblewrap` (and allow unprivileged user namespaces), or build "
            "without a sandbox with --no-sandbox (outputs may then depend on this machine)"
        )
    return found


@dataclass(frozen=True)
class Ended:
    status: int  # the script's exit status (negative: the signal that ended it)
    limit: str | None = None  # what stopped it, if a limit did: "timed out after 5 s (--timeout)"


def run(
    job: Job, bwrap: str | None, log: Path, limits: Limits = Limits(), on_line: Callable[[bytes], None] | None = None
) -> Ended:
    """Run the script; stdout and stderr go through a pipe to `log` (and each line
    to `on_line`), and the build's whole process tree is killed when it ends or
    passes a limit. Memory and process limits apply only where probe() says a
    cgroup can be made (the caller warns otherwise)."""
    prepare(job)
    enforce = limits.needs_cgroup and probe().enforceable
    cgroup = Cgroup(probe(), _int(limits.max_memory), _int(limits.max_procs)) if enforce else None
    # unsandboxed, the script's group dies when watch_write closes (with this process)
    watch_read, watch_write = (-1, -1) if bwrap else os.pipe()
    out_read, out_write = os.pipe()
    keep: tuple[int, ...]  # the descriptors the script inherits
    try:
        if bwrap:
            argv, env, cwd, keep = bwrap_argv(job, bwrap), {}, None, ()
        else:
            argv, env, cwd, keep = plain_argv(job, watch_read), environment(job, False), job.layout.src, (watch_read,)

        if cgroup is not None:
            argv = cgroup.command(argv)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "wb") as fh:
            # no preexec_fn: the child runs no Python (safe beside the engine's threads),
            # and subprocess can vfork rather than copy lwrecipe's memory
            proc = spawn(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out_write,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                pass_fds=keep,
                umask=0o022,
                start_new_session=True,
            )
            os.close(out_write)  # the build's end of the pipe is the build's only
            out_write = -1
            if watch_read >= 0:
                os.close(watch_read)  # only the watcher reads it
                watch_read = -1
            try:
                faults.point("build")
                limit = watch(proc, out_read, fh, limits, cgroup, lambda: _kill_tree(proc, cgroup), on_line)
            finally:
                _kill_tree(proc, cgroup)  # what the script left running ends with it, as in the sandbox's namespace
            return Ended(proc.returncode, limit)
    finally:
        for fd in (watch_read, watch_write, out_read, out_write):
            if fd >= 0:
                os.close(fd)
        if cgroup is not None:
            cgroup.remove()


def _int(limit: Limit | None) -> int | None:
    return None if limit is None else int(limit.value)


def _kill_tree(proc: subprocess.Popen[bytes], cgroup: Cgroup | None) -> None:
    """The build's process group (bubblewrap: its PID namespace ends with it) and,
    with a cgroup, everything in it: a process that left the group too."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 9)
    if cgroup is not None:
        cgroup.kill()
    proc.wait()
