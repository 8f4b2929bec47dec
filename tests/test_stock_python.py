"""lwrecipe on the distribution's own Python (Debian 12: 3.11.2, without PEP 706's
extraction filters), installed in a venv as a user would: unpacking refuses the same
archives, and a real tarball gives the same output id as under the newer Python."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import REPO, Project, run_subprocess, upstream

MUSL = "musl-1.2.5.tar.gz"
MUSL_SHA256 = "a9a118bbe84d8764da0ea0d28b3ab3fae8477fc7e4085d90102b8596fc7c75e4"


def test_the_unpacking_tests_pass_under_the_system_python(system_python: Path) -> None:
    version = subprocess.run([str(system_python), "-c", "import sys; print(sys.version.split()[0])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    result = subprocess.run([str(system_python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests/test_unpack.py", "tests/test_debs.py"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, f"Python {version}:\n{result.stdout[-3000:]}"


def test_a_real_tarball_builds_to_the_same_output_under_both_pythons(project: Project, system_python: Path) -> None:
    musl = upstream(f"sources/{MUSL}")
    project.recipe("musl-tree", f"""\
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
        """)
    env = {"LWRECIPE_MIRRORS": str(musl.parent)}  # an air-gapped user's mirror directory
    ids = []
    for python, cache in ((None, "newer"), (system_python, "system")):
        argv = ["--cache", str(project.root / cache), "build", "musl-tree"]
        if python is None:
            result = run_subprocess(*argv, cwd=project.root, env=env)
            code, err = result.code, result.err
        else:
            proc = subprocess.run([str(python), "-I", "-m", "lwrecipe", *argv], cwd=project.root, capture_output=True,
                                  text=True, env={**os.environ, **env})
            code, err = proc.returncode, proc.stderr
        assert code == 0 and "Traceback" not in err, err
        [record] = [json.loads(p.read_text()) for p in (project.root / cache / "ac").iterdir()]
        ids.append(record["output_id"])
    assert ids[0] == ids[1]
