"""A recipe author's loop on real sandboxed builds: `shell` (one command, and an
interactive shell on a pty), `build --keep-failed` with `shell --after-failure`,
`log`, and gc of kept failures."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Project, run_subprocess

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]

PATCH = "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n one\n-two\n+TWO\n"
# What a build sees, written the same way by the build (into $LW_OUT) and by `shell -- CMD` (to stdout).
PROBE = (
    'pwd; cat a.txt; ls /deps; ls /deps/lib/lib; env | grep -v "^_=" | sort; '
    "if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then echo network; else echo no network; fi"
)


def app(script: str) -> str:
    return f"""schema = 1
[package]
name = "app"
version = "1"
license = "MIT"
[[sources]]
path = "src/a.txt"
[[patches]]
file = "patches/p.patch"
[build]
depends = ["lib"]
host_tools = ["cat", "ls", "env", "grep", "sort", "mkdir", "false"]
env = {{ FOO = "bar" }}
script = '''
{script}
'''
"""


@pytest.fixture
def author(project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("LWRECIPE_CONFIG", str(tmp_path / "no-config.toml"))
    project.file("src/a.txt", "one\ntwo\n")
    project.file("patches/p.patch", PATCH)
    project.recipe(
        "lib",
        'schema = 1\n[package]\nname = "lib"\nversion = "1"\nlicense = "MIT"\n[build]\n'
        'host_tools = ["mkdir"]\nscript = \'mkdir -p "$LW_OUT/lib" && echo data > "$LW_OUT/lib/x"\'\n',
    )
    return project


def lw(project: Project, *args: str, env: dict[str, str] | None = None):
    return run_subprocess("--cache", str(project.root / "cache"), *args, cwd=project.root, env=env)


def test_shell_command_sees_exactly_what_the_build_sees_and_no_network(author: Project) -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = str(listener.getsockname()[1])
    try:
        author.recipe("app", app(f'mkdir -p "$LW_OUT"\n( PORT={port}; {PROBE} ) > "$LW_OUT/seen"'))
        built = lw(author, "build", "app")
        assert built.code == 0, built.err
        out = author.root / "out"
        assert lw(author, "checkout", "app", str(out)).code == 0
        shell = lw(author, "shell", "app", "--", "/bin/bash", "-c", f"PORT={port}; {PROBE}")
        assert shell.code == 0, shell.err
    finally:
        listener.close()
    seen = (out / "seen").read_text()
    assert shell.out == seen
    assert seen.startswith("/build/src\none\nTWO\nlib\nx\n") and "FOO=bar\n" in seen and seen.endswith("no network\n")
    assert "LW_DEP_LIB=/deps/lib\n" in seen
    records = list((author.root / "cache" / "ac").iterdir())
    assert len(records) == 2  # the shell added nothing to the cache
    assert not list((author.root / "cache" / "tmp").iterdir())


def test_an_interactive_shell_on_a_pty(author: Project) -> None:
    author.recipe("app", app('mkdir -p "$LW_OUT"'))
    pid, fd = pty.fork()
    if pid == 0:  # the child: lwrecipe shell on the pty
        os.chdir(author.root)
        os.execve(
            sys.executable,
            [sys.executable, "-I", "-m", "lwrecipe", "--cache", str(author.root / "cache"), "shell", "app"],
            {**os.environ, "TERM": "dumb"},
        )
    screen = b""

    def read_until(marker: bytes, seconds: float = 60) -> None:
        nonlocal screen
        end = time.monotonic() + seconds
        while marker not in screen and time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    screen += os.read(fd, 4096)
                except OSError:
                    return

    read_until(b"nothing done here enters the cache")
    os.write(fd, b'cat a.txt; echo "in:$LW_SRC:$FOO"\n')
    read_until(b"in:/build/src:bar")
    os.write(fd, b"exit 7\n")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert b"TWO" in screen and b"in:/build/src:bar" in screen, screen.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 7


def test_keep_failed_then_shell_after_failure_and_log(author: Project) -> None:
    author.recipe(
        "app", app('mkdir -p "$LW_OUT"\ncat a.txt "$LW_DEP_LIB/lib/x" > "$LW_OUT/half"\necho about to fail\nfalse')
    )
    failed = lw(author, "build", "app", "--keep-failed")
    kept = author.root / "cache" / "failed" / "app"
    assert failed.code == 1 and f"its build directory is kept in {kept}" in failed.err, failed.err
    assert (kept / "work" / "out" / "half").read_text() == "one\nTWO\ndata\n"
    inside = lw(author, "shell", "app", "--after-failure", "--", "/bin/bash", "-c", "cat /build/out/half")
    assert inside.code == 0 and inside.out == "one\nTWO\ndata\n", inside.err
    log = lw(author, "log", "app")
    assert log.code == 0 and log.out == "about to fail\n" and "the log of the failed build" in log.err
    author.recipe("app", app('mkdir -p "$LW_OUT"\necho fixed\necho ok > "$LW_OUT/r"'))
    assert lw(author, "build", "app").code == 0
    log = lw(author, "log", "app")
    assert log.code == 0 and log.out == "fixed\n" and "the log of its build of" in log.err
    no_kept = lw(author, "log", "lib")
    assert no_kept.code == 0 and no_kept.out == ""
    os.utime(kept, (time.time() - 8 * 86400,) * 2)
    gc = lw(author, "cache", "gc", "--older-than", "30")
    assert gc.code == 0 and "removed failed/app" in gc.out and not kept.exists()


def test_shell_after_failure_without_one_and_log_of_nothing_are_one_line(author: Project) -> None:
    author.recipe("app", app('mkdir -p "$LW_OUT"'))
    none = lw(author, "shell", "app", "--after-failure")
    assert none.code == 2 and none.err.startswith("error: app: no failed build is kept") and none.err.count("\n") == 1
    never = lw(author, "log", "app")
    assert never.code == 2 and "never built" in never.err and never.err.count("\n") == 1
    assert lw(author, "log", "app", "--follow").code == 2


def test_log_follow_reads_a_running_build(author: Project) -> None:
    author.recipe("app", app('mkdir -p "$LW_OUT"\necho first\nwhile [ ! -e /build/tmp/go ]; do :; done\necho second'))
    build = subprocess.Popen(
        [sys.executable, "-I", "-m", "lwrecipe", "--cache", str(author.root / "cache"), "build", "app"],
        cwd=author.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        tmp = author.root / "cache" / "tmp"
        end = time.monotonic() + 60
        while not list(tmp.glob("build-app-*/work/tmp")) and time.monotonic() < end:
            time.sleep(0.1)
        follow = subprocess.Popen(
            [sys.executable, "-I", "-m", "lwrecipe", "--cache", str(author.root / "cache"), "log", "app", "--follow"],
            cwd=author.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(1)
        [work] = list(tmp.glob("build-app-*/work"))
        (work / "tmp" / "go").write_text("")
        out, _ = follow.communicate(timeout=60)
        assert out == b"first\nsecond\n"
    finally:
        build.wait(timeout=60)
    assert build.returncode == 0


def test_build_verbose_streams_each_line_of_the_build(author: Project) -> None:
    author.recipe("app", app('mkdir -p "$LW_OUT"\necho "to stdout"\necho "to stderr" >&2\nprintf "no newline"'))
    built = lw(author, "-v", "build", "app")
    assert built.code == 0, built.err
    lines = built.err.splitlines()
    assert [line for line in lines if line.startswith("app|")] == [
        "app| to stdout",
        "app| to stderr",
        "app| no newline",
    ]
    quiet = lw(author, "build", "app", "--rebuild")
    assert quiet.code == 0 and "app|" not in quiet.err
