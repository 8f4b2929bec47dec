"""lwrecipe on the distribution's own Python (Debian 12: 3.11.2): the whole suite runs
on it (scripts/setup.sh makes .venv from /usr/bin/python3, scripts/test.sh runs
pytest there), so the unpacking tests, which write every entry themselves and use
tarfile only to read, and the real builds hold on it; and README's set-up, run as a
new user runs it, leaves a working `lwrecipe`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, missing

SYSTEM_PYTHON = Path("/usr/bin/python3")


def test_the_suite_runs_on_the_distributions_python() -> None:
    if not SYSTEM_PYTHON.exists():
        missing(f"{SYSTEM_PYTHON}: not on this machine")
    system = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=True
    ).stdout
    if sys.base_prefix != "/usr" or system != f"{sys.version}\n":
        missing(
            f"the suite runs on {sys.executable} ({sys.version.split()[0]}), not {SYSTEM_PYTHON}: run scripts/test.sh"
        )


@pytest.mark.slow
@pytest.mark.network  # scripts/setup.sh installs lwrecipe's dependencies from PyPI
def test_setup_on_the_systems_path_alone_leaves_a_working_lwrecipe(tmp_path: Path) -> None:
    """README's set-up as a new user runs it: a fresh checkout, PATH reduced to the
    system's directories (no pyenv, no .venv): the venv is made from /usr/bin/python3
    and `lwrecipe` runs from the link, here put in a directory of the test's own."""
    checkout = tmp_path / "lwrecipe"
    shutil.copytree(REPO, checkout, ignore=shutil.ignore_patterns(".venv", "cache", "__pycache__", "*.egg-info"))
    bindir = tmp_path / "bin"
    system_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env = {"PATH": system_path, "HOME": os.environ.get("HOME", "/root"), "LWRECIPE_BIN_DIR": str(bindir)}
    setup = subprocess.run(["bash", "scripts/setup.sh"], cwd=checkout, env=env, capture_output=True, text=True)
    assert setup.returncode == 0, setup.stderr[-3000:]
    version = subprocess.run(
        [str(checkout / ".venv" / "bin" / "python"), "-c", "import sys; print(sys.version)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    system = subprocess.run(
        ["/usr/bin/python3", "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=True
    ).stdout
    assert version == system
    run = subprocess.run(
        ["lwrecipe", "plan", "examples/hello-wasm/hello-wasm.toml"],
        cwd=checkout,
        env={**env, "PATH": f"{bindir}:{system_path}"},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and "hello-wasm" in run.stdout, run.stderr
    assert (bindir / "lwrecipe").resolve() == (checkout / ".venv" / "bin" / "lwrecipe").resolve()
