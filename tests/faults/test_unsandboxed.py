"""Builds without bubblewrap (`--no-sandbox` where bwrap cannot create a sandbox)
leave no process behind: not when lwrecipe is killed mid-build, not when the
script leaves something running in the background.

The machine's bubblewrap is hidden behind a `bwrap` on PATH that fails, as it
does on a kernel without unprivileged user namespaces.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from lwrecipe.core.faults import ENV
from tests.conftest import Project, run_subprocess

pytestmark = pytest.mark.slow


@pytest.fixture
def no_bwrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    broken = tmp_path / "broken-bwrap"
    broken.mkdir()
    (broken / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    (broken / "bwrap").chmod(0o755)
    monkeypatch.setenv("PATH", f"{broken}:{os.environ['PATH']}")
    monkeypatch.setenv("LWRECIPE_CONFIG", str(tmp_path / "no-config.toml"))
    return broken


def recipe(name: str, script: str) -> str:
    return (
        f'schema = 1\n[package]\nname = "{name}"\nversion = "1.0"\nlicense = "MIT"\n'
        f"[build]\nhost_tools = [\"sleep\", \"touch\", \"mkdir\"]\nscript = '''\n{script}\n'''\n"
    )


def lw(project: Project, *args: str, kill_at: str | None = None):
    return run_subprocess(
        "--cache", str(project.root / "cache"), *args, cwd=project.root, env={ENV: kill_at} if kill_at else {}
    )


def test_without_bubblewrap_build_refuses_unless_allowed(project: Project, no_bwrap: Path) -> None:
    project.recipe("plain", recipe("plain", 'mkdir -p "$LW_OUT"; touch "$LW_OUT/done"'))
    refused = lw(project, "build", "plain")
    assert refused.code != 0 and "bubblewrap" in refused.err
    built = lw(project, "build", "plain", "--no-sandbox")
    assert built.code == 0, built.err
    records = list((project.root / "cache" / "ac").iterdir())
    assert [json.loads(r.read_text())["sandbox"] for r in records] == ["none"]
    plan = lw(project, "plan", "plain", "--json")
    assert [row["status"] for row in json.loads(plan.out)] == ["cached (no sandbox)"]
    assert lw(project, "lock", "--offline").code == 0
    audit = lw(project, "audit")
    assert audit.code == 0 and "flag: plain: output" in audit.out and "built without a sandbox" in audit.out
    strict = lw(project, "audit", "--strict")
    assert strict.code == 3 and "built without a sandbox" in strict.err


def test_unsandboxed_outputs_are_never_shared(project: Project, no_bwrap: Path, tmp_path: Path) -> None:
    """--no-sandbox outputs had the same key as sandboxed ones and were pushed,
    pulled and trusted like them."""
    project.recipe("plain", recipe("plain", 'mkdir -p "$LW_OUT"; touch "$LW_OUT/done"'))
    assert lw(project, "build", "plain", "--no-sandbox").code == 0
    remote = tmp_path / "remote"
    pushed = lw(project, "cache", "push", str(remote))
    assert (
        pushed.code != 0
        and "plain: built without a sandbox (--no-sandbox); such outputs are never shared" in pushed.err
    )
    assert not (remote / "ac").exists() or not list((remote / "ac").iterdir())
    # a remote that has one anyway (written by hand, or by an older lwrecipe) is not used
    shutil.copytree(project.root / "cache" / "ac", remote / "ac")
    shutil.copytree(project.root / "cache" / "cas", remote / "cas")
    other = run_subprocess(
        "--cache",
        str(tmp_path / "other"),
        "cache",
        "pull",
        str(remote),
        "plain",
        "--no-verify-signatures",
        cwd=project.root,
    )
    assert "built without a sandbox; outputs of unsandboxed builds are never substituted; refused" in other.err
    assert not (tmp_path / "other" / "ac").exists() or not list((tmp_path / "other" / "ac").iterdir())


def test_killed_lwrecipe_takes_the_script_with_it(project: Project, no_bwrap: Path, tmp_path: Path) -> None:
    marker = tmp_path / "script-outlived-lwrecipe"
    project.recipe("slow", recipe("slow", f'sleep 2 & sleep 3\ntouch "{marker}"'))
    killed = lw(project, "build", "slow", "--no-sandbox", kill_at="build")
    assert killed.code == -signal.SIGKILL, killed.err
    time.sleep(4)
    assert not marker.exists()


def test_what_the_script_leaves_running_ends_with_it(project: Project, no_bwrap: Path, tmp_path: Path) -> None:
    marker = tmp_path / "left-running"
    # absolute paths: the directory of host-tool links is gone once the build ends
    project.recipe(
        "leaky",
        recipe("leaky", f'(/usr/bin/sleep 2; /usr/bin/touch "{marker}") &\nmkdir -p "$LW_OUT"; touch "$LW_OUT/x"'),
    )
    built = lw(project, "build", "leaky", "--no-sandbox")
    assert built.code == 0, built.err
    time.sleep(3)
    assert not marker.exists()


def test_exit_status_reaches_the_error(project: Project, no_bwrap: Path) -> None:
    project.recipe("fails", recipe("fails", "exit 7"))
    failed = lw(project, "build", "fails", "--no-sandbox")
    assert failed.code != 0 and "exited with status 7" in failed.err
