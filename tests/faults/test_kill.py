"""kill -9 at every fault point of fetch, unpack, patch, build, pack, store
writes, records, push, pull and lock: afterwards nothing is corrupt, nothing
half-written sits under a final name, and the same command succeeds.

The kill is the process's own SIGKILL at an exact point (lwrecipe/core/faults.py),
so every point is hit on every run, without timing races.
"""

from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path

import pytest

from lwrecipe.core.faults import ENV
from tests.conftest import Project, run_subprocess
from tests.integration.test_build import PATCH, tarball
from tests.servers import fault_server, nginx_server

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]

SCRIPT = """mkdir -p "$LW_OUT/bin" "$LW_OUT/share"
cc -O2 -o "$LW_OUT/bin/hello" hello.c
for i in 1 2 3 4 5 6; do echo "file $i" > "$LW_OUT/share/f$i"; done"""

# Points a `build` passes, with how many times: a store write happens for the
# download, the output blob, the log and the record.
BUILD_POINTS = [
    "download",
    "unpack",
    "patch",
    "build",
    "pack",
    "record",
    *(f"commit:{n}" for n in range(1, 5)),
    *(f"renamed:{n}" for n in range(1, 5)),
]


@pytest.fixture
def served():
    with fault_server() as srv:
        yield srv


@pytest.fixture
def hello(project: Project, served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("LWRECIPE_CONFIG", str(tmp_path / "no-config.toml"))
    data = tarball({"hello.c": b'#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'})
    url = served.add("/hello-1.0.tar.gz", data)
    project.file("patches/hello/0001-patched.patch", PATCH)
    project.recipe(
        "hello",
        (
            f'schema = 1\n[package]\nname = "hello"\nversion = "1.0"\nlicense = "MIT"\n'
            f'[[sources]]\nurl = "{url}"\nsha256 = "{hashlib.sha256(data).hexdigest()}"\nstrip = 1\n'
            '[[patches]]\nfile = "patches/hello/0001-patched.patch"\n'
            f'[build]\nhost_tools = ["cc", "as", "ld", "mkdir"]\nscript = \'\'\'\n{SCRIPT}\n\'\'\'\n'
        ),
    )
    return project


def lw(project: Project, *args: str, kill_at: str | None = None, cache: str = "cache"):
    env = {ENV: kill_at} if kill_at else {}
    return run_subprocess("--cache", str(project.root / cache), *args, cwd=project.root, env=env)


def assert_consistent(cache: Path) -> None:
    """Every entry under a final name is whole: blobs hash to their names, records
    parse and name their key; `cache verify` finds nothing to remove."""
    for kind in ("cas", "sources"):
        for path in (cache / kind).iterdir() if (cache / kind).is_dir() else []:
            assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, path
    for path in (cache / "ac").iterdir() if (cache / "ac").is_dir() else []:
        record = json.loads(path.read_text())
        assert record["key"] == path.name
        assert (cache / "cas" / record["blob"]["sha256"]).is_file()  # a record never precedes its blob


@pytest.mark.parametrize("point", BUILD_POINTS)
def test_kill_during_build(hello: Project, point: str) -> None:
    killed = lw(hello, "build", "hello", kill_at=point)
    assert killed.code == -signal.SIGKILL, (point, killed.err)
    cache = hello.root / "cache"
    assert_consistent(cache)
    verify = lw(hello, "cache", "verify")
    assert verify.code == 0 and "0 corrupt quarantined" in verify.err
    again = lw(hello, "build", "hello")
    assert again.code == 0, again.err
    assert_consistent(cache)
    out = hello.root / "out"
    assert lw(hello, "checkout", "hello", str(out)).code == 0
    assert (out / "share" / "f6").read_text() == "file 6\n"


@pytest.mark.parametrize("remote_kind", ["directory", "nginx"])
def test_kill_during_push_and_pull(hello: Project, tmp_path: Path, remote_kind: str) -> None:
    assert lw(hello, "build", "hello").code == 0
    with nginx_server(tmp_path / "nginx") if remote_kind == "nginx" else _directory(tmp_path / "dir") as url:
        served_root = tmp_path / "nginx" / "www" if remote_kind == "nginx" else tmp_path / "dir"
        killed = lw(hello, "cache", "push", url, "hello", kill_at="push")
        assert killed.code == -signal.SIGKILL, killed.err
        assert_consistent(served_root)
        assert lw(hello, "cache", "push", url, "hello").code == 0
        assert_consistent(served_root)
        for n, point in enumerate(("download", "commit:1", "renamed:1", "commit:2", "commit:3", "renamed:3")):
            cache = f"b{n}"
            pulled = lw(hello, "cache", "pull", url, "hello", "--no-verify-signatures", kill_at=point, cache=cache)
            assert pulled.code == -signal.SIGKILL, (point, pulled.err)
            assert_consistent(hello.root / cache)
            again = lw(hello, "cache", "pull", url, "hello", "--no-verify-signatures", cache=cache)
            assert again.code == 0 and ("1 pulled" in again.err or "1 already here" in again.err), again.err
            assert_consistent(hello.root / cache)


class _directory:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> str:
        return str(self.path)

    def __exit__(self, *exc: object) -> None:
        pass


def test_kill_during_lock_write(hello: Project) -> None:
    assert lw(hello, "lock", "--offline").code == 0
    before = (hello.root / "lockfile.toml").read_bytes()
    (hello.root / "patches" / "hello" / "0001-patched.patch").write_text(PATCH.replace("patched", "changed"))
    killed = lw(hello, "lock", "--offline", kill_at="lock")
    assert killed.code == -signal.SIGKILL
    assert (hello.root / "lockfile.toml").read_bytes() == before  # the old lockfile, whole
    assert lw(hello, "lock", "--offline").code == 0
    assert (hello.root / "lockfile.toml").read_bytes() != before
    assert lw(hello, "lock", "--check", "--offline").code == 0
