"""`mirror export DIR` where DIR's contents are someone else's (a project's `[mirrors]
files` directory): links planted at every name export writes — its temporary names,
the final names, SHA256SUMS — must be replaced or refused, never written, chmodded or
read through. Victim files keep their bytes and modes."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from tests.conftest import Project, run_subprocess, script_recipe

pytestmark = pytest.mark.slow

DATA = b"plain download for the mirror\n"
SHA = hashlib.sha256(DATA).hexdigest()
NAME = "x.bin"


def _victim(tmp_path: Path, name: str) -> Path:
    victim = tmp_path / "host" / name
    victim.parent.mkdir(exist_ok=True)
    victim.write_bytes(f"{SHA}  stolen-{name}\nvictim {name}\n".encode())
    victim.chmod(0o600)
    return victim


def _kept(project: Project, tmp_path: Path) -> tuple[Path, Path]:
    """A recipe keeping one download (unpack = false), a mirror holding it, and an
    empty export directory: (mirror, export directory)."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / SHA).write_bytes(DATA)
    project.recipe(
        "kept",
        script_recipe(
            "kept",
            'mkdir -p "$LW_OUT"',
            extra=(
                f'[[sources]]\nurl = "https://example.invalid/{NAME}"\nsha256 = "{SHA}"\nname = "tools"\nunpack = false\n'
            ),
        ),
    )
    out = project.root / "export"
    out.mkdir()
    return mirror, out


def test_export_never_writes_or_chmods_through_a_link_in_the_directory(project: Project, tmp_path: Path) -> None:
    mirror, out = _kept(project, tmp_path)
    planted = [f".{SHA}.tmp", f".{NAME}.tmp", ".SHA256SUMS.tmp", "SHA256SUMS"]
    victims = {name: _victim(tmp_path, f"v{i}") for i, name in enumerate(planted)}
    for name, victim in victims.items():
        (out / name).symlink_to(victim)
    before = {v: (v.read_bytes(), stat.S_IMODE(v.stat().st_mode)) for v in victims.values()}

    result = run_subprocess(
        "--cache",
        str(project.root / "cache"),
        "mirror",
        "export",
        str(out),
        "kept",
        "--offline",
        cwd=project.root,
        env={"LWRECIPE_MIRRORS": str(mirror)},
    )

    assert "Traceback" not in result.err, result.err
    assert {v: (v.read_bytes(), stat.S_IMODE(v.stat().st_mode)) for v in victims.values()} == before
    assert result.code == 0, result.err
    assert (out / SHA).read_bytes() == DATA and not (out / SHA).is_symlink()
    assert stat.S_IMODE((out / SHA).stat().st_mode) == 0o644
    assert os.path.samefile(out / NAME, out / SHA)
    sums = (out / "SHA256SUMS").read_text()
    assert not (out / "SHA256SUMS").is_symlink() and "stolen" not in sums
    assert sums == f"{SHA}  {SHA}\n{SHA}  {NAME}\n"


def test_export_replaces_a_link_at_a_final_name_without_reading_it(project: Project, tmp_path: Path) -> None:
    """A link at `<sha256>` is replaced by the bytes (the victim stays); a link at the
    download's name is another file's: kept, and the download listed by sha256 only."""
    mirror, out = _kept(project, tmp_path)
    at_sha, at_name = _victim(tmp_path, "sha"), _victim(tmp_path, "name")
    (out / SHA).symlink_to(at_sha)
    (out / NAME).symlink_to(at_name)
    before = {v: (v.read_bytes(), stat.S_IMODE(v.stat().st_mode)) for v in (at_sha, at_name)}

    result = run_subprocess(
        "--cache",
        str(project.root / "cache"),
        "mirror",
        "export",
        str(out),
        "kept",
        "--offline",
        cwd=project.root,
        env={"LWRECIPE_MIRRORS": str(mirror)},
    )

    assert result.code == 0 and "Traceback" not in result.err, result.err
    assert {v: (v.read_bytes(), stat.S_IMODE(v.stat().st_mode)) for v in (at_sha, at_name)} == before
    assert not (out / SHA).is_symlink() and (out / SHA).read_bytes() == DATA
    assert (out / NAME).is_symlink()
    assert f"the name {NAME} is another file's here; by sha256 only" in result.out
