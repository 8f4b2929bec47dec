"""lwrecipe on the distribution's own Python (Debian 12: 3.11.2), installed in a venv
as a user would: unpacking (which writes every entry itself, using tarfile only to
read) refuses the same archives, and a real tarball gives the same output id as under
the newer Python."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO, Project, run_subprocess, upstream

MUSL = "musl-1.2.5.tar.gz"
MUSL_SHA256 = "a9a118bbe84d8764da0ea0d28b3ab3fae8477fc7e4085d90102b8596fc7c75e4"


def test_the_unpacking_tests_pass_under_the_system_python(system_python: Path) -> None:
    version = subprocess.run(
        [str(system_python), "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    result = subprocess.run(
        [
            str(system_python),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_unpack.py",
            "tests/test_debs.py",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"Python {version}:\n{result.stdout[-3000:]}"


def test_a_real_tarball_builds_to_the_same_output_under_both_pythons(project: Project, system_python: Path) -> None:
    musl = upstream(f"sources/{MUSL}")
    project.recipe(
        "musl-tree",
        f"""\
        schema = 1
        [package]
        name = "musl-tree"
        version = "1.2.5"
        license = "MIT"
        [[sources]]
        url = "https://musl.libc.org/releases/{MUSL}"
        sha256 = "{MUSL_SHA256}"
        strip = 1
        [build]
        host_tools = ["cp"]
        script = 'cp -R include src "$LW_OUT"/'
        """,
    )
    env = {"LWRECIPE_MIRRORS": str(musl.parent)}  # an air-gapped user's mirror directory
    ids = []
    for python, cache in ((None, "newer"), (system_python, "system")):
        argv = ["--cache", str(project.root / cache), "build", "musl-tree"]
        if python is None:
            result = run_subprocess(*argv, cwd=project.root, env=env)
            code, err = result.code, result.err
        else:
            proc = subprocess.run(
                [str(python), "-I", "-m", "lwrecipe", *argv],
                cwd=project.root,
                capture_output=True,
                text=True,
                env={**os.environ, **env},
            )
            code, err = proc.returncode, proc.stderr
        assert code == 0 and "Traceback" not in err, err
        [record] = [json.loads(p.read_text()) for p in (project.root / cache / "ac").iterdir()]
        ids.append(record["output_id"])
    assert ids[0] == ids[1]


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
