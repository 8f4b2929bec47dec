"""Archive bombs: a small pinned download that unpacks to far more bytes or entries
than any source tree. `[unpack] max_size` / `max_entries` of the user's config bound
one archive; past them the build is refused (exit 3, one line) before the sandbox
starts, with nothing of the archive left in the cache. A project cannot set them."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from tests.conftest import Project, Result, run_subprocess, script_recipe

pytestmark = pytest.mark.slow


def _tar_gz(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def _build(project: Project, tmp_path: Path, archive: bytes, config: str) -> Result:
    sha = hashlib.sha256(archive).hexdigest()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / sha).write_bytes(archive)
    user = tmp_path / "user.toml"
    user.write_text(config)
    project.recipe(
        "bomb",
        script_recipe(
            "bomb",
            'mkdir -p "$LW_OUT"',
            'host_tools = ["mkdir"]',
            extra=(f'[[sources]]\nurl = "https://example.invalid/bomb.tar.gz"\nsha256 = "{sha}"\n'),
        ),
    )
    return run_subprocess(
        "--cache",
        str(project.root / "cache"),
        "build",
        "bomb",
        cwd=project.root,
        env={"LWRECIPE_MIRRORS": str(mirror), "LWRECIPE_CONFIG": str(user)},
    )


def _nothing_left(project: Project) -> None:
    left = [p for p in (project.root / "cache" / "tmp").rglob("*") if p.is_file()]
    assert left == []
    assert not list((project.root / "cache" / "ac").iterdir())


def test_an_archive_past_max_size_is_refused(project: Project, tmp_path: Path) -> None:
    archive = _tar_gz({"top/a": bytes(700 << 10), "top/b": bytes(700 << 10)})
    assert len(archive) < 10 << 10
    result = _build(project, tmp_path, archive, '[unpack]\nmax_size = "1M"\n')
    assert result.code == 3 and "Traceback" not in result.err, result.err
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.err
    assert errors[0].endswith("bomb.toml: sources[0]: unpacks to more than 1 MiB (max_size in [unpack]); refused")
    _nothing_left(project)


def test_an_archive_past_max_entries_is_refused(project: Project, tmp_path: Path) -> None:
    archive = _tar_gz({f"top/{i}": b"" for i in range(150)})
    result = _build(project, tmp_path, archive, "[unpack]\nmax_entries = 100\n")
    assert result.code == 3 and "Traceback" not in result.err, result.err
    assert "bomb.toml: sources[0]: has more than 100 entries (max_entries in [unpack]); refused" in result.err
    _nothing_left(project)


@pytest.mark.parametrize("config", ['max_size = "1K"\n', "max_entries = 0\n", 'max_size = "lots"\n'])
def test_a_bad_unpack_setting_is_a_usage_error(project: Project, tmp_path: Path, config: str) -> None:
    result = _build(project, tmp_path, _tar_gz({"top/a": b"x"}), "[unpack]\n" + config)
    if config.startswith('max_size = "1K"'):
        assert result.code == 0, result.err  # a small limit is a limit, not an error
        return
    assert result.code == 2 and "Traceback" not in result.err, result.err
    assert "user.toml" in result.err and "unpack." in result.err


def test_a_projects_unpack_limits_are_ignored_unless_accepted(project: Project, tmp_path: Path) -> None:
    """A project could only raise them for the archive it ships: its [unpack] is
    ignored with the warning every such setting gets."""
    project.file("lwrecipe.toml", '[unpack]\nmax_entries = 100\nmax_size = "1G"\n')
    archive = _tar_gz({f"top/{i}": b"" for i in range(150)})
    result = _build(project, tmp_path, archive, "")
    assert result.code == 0, result.err
    assert "lwrecipe.toml: unpack: ignored (a project's config cannot set these" in result.err
