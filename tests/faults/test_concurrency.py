"""Many lwrecipe processes on one cache at once: overlapping builds, pushes and
pulls of the same keys, and `cache gc` running alongside."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.integration.test_stack import write_stack
from tests.servers import fault_server

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]

TARGETS = ["program", "image", "libc", "headers"]


def spawn(project: Project, *args: str, cache: str = "cache") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-I", "-m", "lwrecipe", "--cache", str(project.root / cache), *args],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(procs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    return [(p.wait(timeout=600), p.stderr.read()) for p in procs]


@pytest.mark.parametrize("n", [4, 8])
def test_overlapping_builds_with_gc_push_and_pull(
    project: Project, tmp_path: Path, n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LWRECIPE_CONFIG", str(tmp_path / "no-config.toml"))
    with fault_server() as served:
        write_stack(project, served)
        remote = tmp_path / "remote"
        builders = [
            spawn(project, "build", TARGETS[i % len(TARGETS)], "--push", "--remote", str(remote)) for i in range(n)
        ]
        side = [spawn(project, "cache", "gc", "--older-than", "30"), spawn(project, "cache", "gc", "--max-size", "1G")]
        results = finish(builders)
        side_results = finish(side)
    assert all(code == 0 for code, _ in results + side_results), results + side_results
    for name in ("toolchain", "headers", "libc", "program", "image"):
        assert sum(f"{name}: built" in err for _, err in results) == 1, (name, results)  # once, by one process
    total = sum(int(re.search(r"(\d+) built", err).group(1)) for _, err in results)
    assert total == 5
    cache = project.root / "cache"
    outputs = {
        json.loads(p.read_text())["name"]: json.loads(p.read_text())["output_id"] for p in (cache / "ac").iterdir()
    }
    assert set(outputs) == {"toolchain", "headers", "libc", "program", "image"}

    # Now pull the same keys into fresh caches while pushing them again, all at once.
    pushes = [spawn(project, "cache", "push", str(remote)) for _ in range(2)]
    pulls = [
        spawn(project, "cache", "pull", str(remote), "image", "--no-verify-signatures", cache=f"pull{i}")
        for i in range(n // 2)
    ]
    shared = [
        spawn(project, "cache", "pull", str(remote), "image", "--no-verify-signatures", cache="shared")
        for _ in range(n // 2)
    ]
    moved = finish(pushes + pulls + shared)
    assert all(code == 0 for code, _ in moved), moved
    for i in range(n // 2):
        pulled = {
            json.loads(p.read_text())["name"]: json.loads(p.read_text())["output_id"]
            for p in (project.root / f"pull{i}" / "ac").iterdir()
        }
        assert pulled == outputs
    for where in [cache, project.root / "shared", *(project.root / f"pull{i}" for i in range(n // 2))]:
        verify = subprocess.run(
            [sys.executable, "-I", "-m", "lwrecipe", "--cache", str(where), "cache", "verify"],
            cwd=project.root,
            capture_output=True,
            text=True,
        )
        assert verify.returncode == 0 and "0 corrupt quarantined" in verify.stderr, verify.stderr
