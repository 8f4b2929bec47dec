"""A cache on a full file system: a clear one-line error, nothing corrupt, and
the same command succeeds once there is room."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Project, run_subprocess
from tests.integration.test_build import tarball
from tests.servers import fault_server

pytestmark = pytest.mark.slow


@pytest.fixture
def small_fs(tmp_path: Path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.root
@pytest.mark.sandbox
def test_store_write_on_a_full_disk(
    project: Project, small_fs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LWRECIPE_CONFIG", str(tmp_path / "no-config.toml"))
    with fault_server() as served:
        data = tarball({"x": b"x"})
        url = served.add("/x.tar.gz", data)
        # 7 MiB of random bytes fit in the build directory but not twice (output + its blob) in 12 MiB.
        project.recipe(
            "big",
            (
                'schema = 1\n[package]\nname = "big"\nversion = "1"\nlicense = "MIT"\n'
                f'[[sources]]\nurl = "{url}"\nsha256 = "{hashlib.sha256(data).hexdigest()}"\nstrip = 1\n'
                '[build]\nhost_tools = ["mkdir", "head"]\n'
                'script = \'mkdir -p "$LW_OUT" && head -c 7340032 /dev/urandom > "$LW_OUT/r"\'\n'
            ),
        )
        cache = small_fs / "cache"
        full = run_subprocess("--cache", str(cache), "build", "big", cwd=project.root)
        assert full.code == 1, full.err
        errors = [line for line in full.err.splitlines() if line.startswith("error:")]
        assert errors == ["error: big: cannot write the build or its output: No space left on device"] or (
            len(errors) == 1 and "No space left on device" in errors[0]
        ), full.err
        assert "Traceback" not in full.err
        verify = run_subprocess("--cache", str(cache), "cache", "verify", cwd=project.root)
        assert verify.code == 0 and "0 corrupt quarantined" in verify.err
        assert not list((cache / "ac").iterdir()) and not list((cache / "tmp").iterdir())
        moved = tmp_path / "roomy"
        shutil.copytree(cache, moved)
        again = run_subprocess("--cache", str(moved), "build", "big", cwd=project.root)
        assert again.code == 0 and "1 built" in again.err, again.err
