"""Recipe scripts that try to escape the sandbox: each attempt is blocked or
cleaned up, and secrets in lwrecipe's own environment never reach a build."""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Project, run_subprocess
from tests.integration.test_build import tarball
from tests.servers import fault_server

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]

ATTEMPTS = """mkdir -p "$LW_OUT"
report() {{ echo "$2" > "$LW_OUT/$1"; }}
if ls -A /root 2>/dev/null | grep -q .; then report root visible; else report root hidden; fi
if cat "{home}/.bashrc" >/dev/null 2>&1 || ls "{home}" >/dev/null 2>&1; then report home visible; else report home hidden; fi
if echo x > "{host_tmp}/escaped" 2>/dev/null; then report tmp written; else report tmp blocked; fi
if (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; then report net open; else report net blocked; fi
env > "$LW_OUT/env"
setsid sleep 300 >/dev/null 2>&1 < /dev/null &
nohup sleep 301 >/dev/null 2>&1 &
report spawned yes
"""


def test_escape_attempts_are_blocked(project: Project, tmp_path: Path) -> None:
    host_tmp = tmp_path / "host-tmp"
    host_tmp.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("secret")
    with fault_server() as served:
        data = tarball({"x": b"x"})
        url = served.add("/x.tar.gz", data)
        script = ATTEMPTS.format(home=home, host_tmp=host_tmp, port=served.port)
        project.recipe(
            "escape",
            (
                'schema = 1\n[package]\nname = "escape"\nversion = "1"\nlicense = "MIT"\n'
                f'[[sources]]\nurl = "{url}"\nsha256 = "{hashlib.sha256(data).hexdigest()}"\nstrip = 1\n'
                '[build]\nhost_tools = ["mkdir", "ls", "grep", "cat", "env", "setsid", "sleep", "nohup"]\n'
                f"script = '''\n{script}\n'''\n"
            ),
        )
        secret_env = {"HOME": str(home), "LWRECIPE_TEAM_TOKEN": "tok-5ecret", "AWS_SECRET_ACCESS_KEY": "aws-5ecret"}
        result = run_subprocess(
            "--cache", str(project.root / "cache"), "build", "escape", cwd=project.root, env=secret_env
        )
        assert result.code == 0, result.err
    out = project.root / "out"
    assert (
        run_subprocess("--cache", str(project.root / "cache"), "checkout", "escape", str(out), cwd=project.root).code
        == 0
    )
    assert (out / "root").read_text() == "hidden\n"
    assert (out / "home").read_text() == "hidden\n"
    assert (out / "tmp").read_text() == "blocked\n" and not (host_tmp / "escaped").exists()
    assert (out / "net").read_text() == "blocked\n"
    env = (out / "env").read_text()
    assert "5ecret" not in env and "LWRECIPE_TEAM_TOKEN" not in env and str(home) not in env
    assert (out / "spawned").read_text() == "yes\n"
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", "sleep 30[01]"], capture_output=True, text=True).stdout.split()
    assert left == [], "a process started by the build outlived it"
