"""Builds that never end, never speak, print without end or eat memory: each is
stopped at its limit with its whole process tree, one line names the limit, and
lwrecipe's own memory stays small whatever a build prints (real builds, real
bubblewrap, real cgroups where the machine has them)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import Project, Result, run_subprocess, script_recipe

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]

MiB = 1 << 20


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "user-config.toml"
    monkeypatch.setenv("LWRECIPE_CONFIG", str(config))
    return config


def recipe(project: Project, name: str, script: str, tools: list[str], build: str = "") -> None:
    listed = ", ".join(f'"{t}"' for t in tools)
    project.recipe(name, script_recipe(name, script, f"host_tools = [{listed}]\n{build}"))


def build(project: Project, *args: str) -> Result:
    return run_subprocess("--cache", str(project.root / "cache"), "build", *args, cwd=project.root)


def running(marker: str) -> list[int]:
    """Processes whose command line holds `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def one_error(result: Result) -> str:
    errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.err[-3000:]
    assert "Traceback" not in result.err
    return errors[0]


@pytest.mark.parametrize("sandbox", [True, False], ids=["bwrap", "no-sandbox"])
def test_a_silent_build_is_stopped_with_what_it_started(project: Project, tmp_path: Path, sandbox: bool) -> None:
    marker = "98765" + ("1" if sandbox else "2")
    recipe(project, "silent", f"echo starting\nsleep {marker} &\nsleep 60", ["sleep"])
    env = {}
    if not sandbox:  # a bwrap that fails, as where user namespaces are off: the watcher ends the tree
        broken = tmp_path / "broken-bwrap"
        broken.mkdir()
        (broken / "bwrap").write_text("#!/bin/sh\nexit 1\n")
        (broken / "bwrap").chmod(0o755)
        env = {"PATH": f"{broken}:{os.environ['PATH']}"}
    result = run_subprocess(
        "--cache",
        str(project.root / "cache"),
        "build",
        "silent",
        "--max-silent-time",
        "2",
        *([] if sandbox else ["--no-sandbox"]),
        cwd=project.root,
        env=env,
    )
    assert result.code == 1
    assert one_error(result) == "error: silent: build produced no output for 2 s (--max-silent-time)"
    assert "starting" in result.err  # the tail of the log
    assert running(f"sleep {marker}") == []
    assert not list((project.root / "cache" / "ac").iterdir())


def test_an_endless_chatty_build_times_out(project: Project) -> None:
    recipe(project, "chatty", "sleep 987653 &\nwhile true; do echo tick; sleep 0.2; done", ["sleep"])
    result = build(project, "chatty", "--timeout", "3", "--max-silent-time", "2")
    assert result.code == 1
    assert one_error(result) == "error: chatty: build timed out after 3 s (--timeout)"
    assert "tick" in result.err
    assert running("sleep 987653") == []


def test_a_recipe_timeout_lowers_the_users_but_never_raises_it(project: Project) -> None:
    recipe(project, "slow", "sleep 60", ["sleep"], build="timeout = 2")
    result = build(project, "slow", "--timeout", "600")
    assert result.code == 1
    assert one_error(result) == "error: slow: build timed out after 2 s (build.timeout in recipes/slow.toml)"
    recipe(project, "slow", "sleep 60", ["sleep"], build="timeout = 600")
    result = build(project, "slow", "--timeout", "2")
    assert one_error(result) == "error: slow: build timed out after 2 s (--timeout)"


def test_limits_from_the_users_config(project: Project, no_user_config: Path) -> None:
    no_user_config.write_text('[build]\nmax_silent_time = 2\nmax_log_size = "1M"\n')
    recipe(project, "silent", "sleep 60", ["sleep"])
    result = build(project, "silent")
    assert one_error(result) == f"error: silent: build produced no output for 2 s (max_silent_time in {no_user_config})"
    recipe(project, "silent", "sleep 60", ["sleep"])
    assert (
        one_error(build(project, "silent", "--max-silent-time", "1"))
        == "error: silent: build produced no output for 1 s (--max-silent-time)"
    )


def test_a_projects_config_sets_no_limit_unless_accepted(project: Project) -> None:
    (project.root / "lwrecipe.toml").write_text("[build]\nmax_silent_time = 1\n")
    recipe(project, "quick", 'sleep 2; echo hi > "$LW_OUT/hi"', ["sleep"])
    result = build(project, "quick")
    assert result.code == 0, result.err
    assert "lwrecipe.toml: build: ignored (a project's config cannot set these" in result.err, result.err
    accepted = run_subprocess(
        "--cache",
        str(project.root / "cache"),
        "--accept-project-config",
        "build",
        "quick",
        "--rebuild",
        cwd=project.root,
    )
    assert accepted.code == 1 and "max_silent_time in" in accepted.err, accepted.err


def test_a_log_past_its_limit_stops_the_build(project: Project) -> None:
    recipe(project, "flood", "yes", ["yes"])
    result = build(project, "flood", "--max-log-size", "1M")
    assert result.code == 1
    assert one_error(result) == "error: flood: build log exceeded 1 MiB (--max-log-size)"
    kept = project.root / "cache" / "logs" / "flood.log"
    assert kept.stat().st_size <= MiB


@pytest.mark.parametrize("bad", ["0", "-3", "soon"])
def test_a_bad_limit_is_a_usage_error(project: Project, bad: str) -> None:
    recipe(project, "quick", "true", [])
    result = build(project, "quick", "--timeout", bad)
    assert result.code == 2 and "argument --timeout: " in result.err and "Traceback" not in result.err


def peak_rss(args: list[str], cwd: Path) -> tuple[int, int, bytes]:
    """Exit status, lwrecipe's own peak RSS (VmHWM of its process, not of the
    build it runs) and its stderr (through a file: a pipe nobody reads would stall it)."""
    command = [sys.executable, "-I", "-m", "lwrecipe", *args]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        peak = 0
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/status") as fh:
                    for line in fh:
                        if line.startswith("VmHWM:"):
                            peak = max(peak, int(line.split()[1]) * 1024)
            except (FileNotFoundError, ProcessLookupError):
                pass
            time.sleep(0.05)
        err.seek(0)
        return proc.wait(), peak, err.read(4 * MiB)


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_a_300_megabyte_log_keeps_lwrecipe_small(project: Project, verbose: bool) -> None:
    line = "a" * 80
    short = "30M" if verbose else "300M"  # -v prints each line: fewer of them keep the test quick
    # one 300 MB line first (nothing may hold a line whole), then short lines
    recipe(
        project,
        "flood",
        f"head -c 300M /dev/zero | tr '\\0' b\n{{ yes {line} || true; }} | head -c {short}\n"
        'echo done > "$LW_OUT/done"',
        ["head", "tr", "yes"],
    )
    cache = str(project.root / "cache")
    args = ["--cache", cache, *(["-v"] if verbose else []), "build", "flood"]
    code, peak, _ = peak_rss(args, project.root)
    assert code == 0
    assert 0 < peak < 300 * MiB, f"lwrecipe's peak RSS {peak / MiB:.0f} MiB"
    code, peak, _ = peak_rss(["--cache", cache, "log", "flood"], project.root)
    assert code == 0
    assert 0 < peak < 300 * MiB, f"`lwrecipe log`'s peak RSS {peak / MiB:.0f} MiB"


def test_a_failing_300_megabyte_build_keeps_lwrecipe_small(project: Project) -> None:
    recipe(project, "flood", "head -c 300M /dev/zero | tr '\\0' b\necho last words\nexit 3", ["head", "tr"])
    code, peak, err = peak_rss(["--cache", str(project.root / "cache"), "build", "flood"], project.root)
    assert code == 1
    assert b"last words" in err
    assert 0 < peak < 300 * MiB, f"lwrecipe's peak RSS {peak / MiB:.0f} MiB"
    assert len(err) < 1 * MiB  # the tail is lines, and lines are cut


def our_cgroups() -> list[Path]:
    """The cgroups this process is in, of the controllers --max-memory and
    --max-procs use (cgroup v1 or v2): where lwrecipe makes its own."""
    mine = dict(line.split(":", 2)[1:] for line in Path("/proc/self/cgroup").read_text().splitlines())
    top = Path("/sys/fs/cgroup")
    found = [top / c / mine[c].strip("\n").lstrip("/") for c in ("memory", "pids") if c in mine]
    return found or ([top / mine[""].lstrip("/")] if "" in mine else [])


def can_make_cgroups() -> bool:
    try:
        for parent in our_cgroups():
            (parent / "lwrecipe-probe-test").mkdir()
            (parent / "lwrecipe-probe-test").rmdir()
    except OSError:
        return False
    return bool(our_cgroups()) and all(
        (d / "memory.max").exists() or (d / "memory.limit_in_bytes").exists() or "pids" in d.parts
        for d in our_cgroups()
    )


cgroups = pytest.mark.skipif(not can_make_cgroups(), reason="no cgroup this user can make here")


@cgroups
def test_a_memory_hog_is_stopped_at_max_memory(project: Project) -> None:
    before = {p: sorted(p.glob("lwrecipe-*")) for p in our_cgroups()}
    recipe(project, "hog", 'x=$(head -c 400M /dev/zero | tr "\\0" a)\necho "${#x}"', ["head", "tr"])
    result = build(project, "hog", "--max-memory", "64M")
    assert result.code == 1
    assert one_error(result) == "error: hog: build ran out of memory: more than 64 MiB (--max-memory)"
    assert {p: sorted(p.glob("lwrecipe-*")) for p in our_cgroups()} == before  # the cgroups are removed


@cgroups
def test_a_process_storm_is_stopped_at_max_procs(project: Project) -> None:
    recipe(project, "storm", "for i in $(seq 100); do sleep 987654 & done\nwait", ["sleep", "seq"])
    result = build(project, "storm", "--max-procs", "20", "--timeout", "60")
    assert result.code == 1
    assert one_error(result) == "error: storm: build reached 20 processes (--max-procs)"
    assert running("sleep 987654") == []


def test_where_cgroups_cannot_be_made_it_says_so_once(project: Project) -> None:
    recipe(project, "quick", 'echo hi > "$LW_OUT/hi"', [])
    recipe(project, "other", 'echo ho > "$LW_OUT/ho"', [], build='depends = ["quick"]')
    result = run_subprocess(
        "--cache",
        str(project.root / "cache"),
        "build",
        "other",
        "--max-memory",
        "64M",
        cwd=project.root,
        env={"LWRECIPE_CGROUP_ROOT": str(project.root / "no-cgroups")},
    )
    assert result.code == 0, result.err
    warnings = [line for line in result.err.splitlines() if "--max-memory" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: "), result.err


def test_the_sandboxs_tmp_is_on_disk_in_the_build_directory(project: Project) -> None:
    recipe(project, "tmpfs", 'stat -f -c %T /tmp > "$LW_OUT/fs"; echo x > /tmp/x; test -f /tmp/x', ["stat", "test"])
    result = build(project, "tmpfs")
    assert result.code == 0, result.err
    out = project.root / "co"
    assert (
        run_subprocess("--cache", str(project.root / "cache"), "checkout", "tmpfs", str(out), cwd=project.root).code
        == 0
    )
    assert (out / "fs").read_text().strip() != "tmpfs"


def test_a_transient_fork_refusal_is_retried(project: Project) -> None:
    """The kernel refusing a fork for a moment (ENOMEM or EAGAIN under memory
    pressure) is not a failed build: the spawn is tried again after a pause."""
    recipe(project, "quick", 'echo hi > "$LW_OUT/hi"', [])
    result = run_subprocess(
        "--cache",
        str(project.root / "cache"),
        "build",
        "quick",
        cwd=project.root,
        env={"LWRECIPE_TEST_REFUSE_AT": "spawn:2:ENOMEM"},
    )
    assert result.code == 0, result.err


def test_a_lasting_fork_refusal_is_one_error_line(project: Project) -> None:
    recipe(project, "quick", 'echo hi > "$LW_OUT/hi"', [])
    result = run_subprocess(
        "--cache",
        str(project.root / "cache"),
        "build",
        "quick",
        cwd=project.root,
        env={"LWRECIPE_TEST_REFUSE_AT": "spawn:1000:EAGAIN"},
    )
    assert result.code == 1
    assert one_error(result).startswith("error: quick: cannot start the build: Resource temporarily unavailable")
    assert not list((project.root / "cache" / "tmp").iterdir())  # nothing half-made is left
