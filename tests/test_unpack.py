"""Safe unpacking: adversarial archives are refused and nothing lands outside the tree."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
import zstandard

from lwrecipe.errors import UnsafeArchive
from lwrecipe.inputs import unpack as unpack_module
from lwrecipe.inputs.unpack import archive_kind, unpack


def make_tar(path: Path, entries: list[tuple], mode: str = "w:gz") -> Path:
    """entries: (name, kind, payload) with kind file|dir|symlink|hardlink|chr|fifo; payload
    is bytes for files, a target for links, a mode for 'setuid'."""
    with tarfile.open(path, mode) as tar:
        for name, kind, *rest in entries:
            info = tarfile.TarInfo(name)
            payload = rest[0] if rest else b""
            if kind == "file":
                info.size, info.mode = len(payload), rest[1] if len(rest) > 1 else 0o644
                tar.addfile(info, io.BytesIO(payload))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                         "chr": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}[kind]
            info.mode = 0o644 if kind == "hardlink" else 0o755
            if kind in ("symlink", "hardlink"):
                info.linkname = payload
            tar.addfile(info)
    return path


@pytest.fixture(autouse=True, params=["native", "own"])
def filters(request, monkeypatch) -> str:
    """Every test twice: with tarfile's own `data` filter (Python 3.11.4 and later) and
    with lwrecipe's checks that stand in for it where Python lacks it (Debian 12's 3.11.2)."""
    if request.param == "own":
        monkeypatch.setattr(unpack_module, "_NATIVE_FILTERS", False)
    return request.param


@pytest.fixture
def dest(tmp_path) -> Path:
    return tmp_path / "tree" / "src"


def outside(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name not in ("tree", "in.tar.gz", "in.zip", "in.tar"))


BAD_TARS = {
    "dotdot": [("pkg/../../evil", "file", b"x")],
    "absolute": [("/tmp/lwrecipe-evil", "file", b"x")],
    "symlink-escape-then-write": [("pkg/link", "symlink", "../../.."), ("pkg/link/evil", "file", b"x")],
    "symlink-absolute": [("pkg/link", "symlink", "/etc")],
    "hardlink-outside": [("pkg/h", "hardlink", "../../../etc/passwd")],
    "device": [("pkg/dev", "chr")],
    "fifo": [("pkg/fifo", "fifo")],
    "setuid": [("pkg/su", "file", b"x", 0o4755)],
    "setgid": [("pkg/sg", "file", b"x", 0o2755)],
    # tarfile itself recursed without end on these (found by tests/faults/test_adversarial.py)
    "hardlink-to-itself": [("pkg/a", "hardlink", "pkg/a")],
    "hardlink-cycle": [("pkg/a", "hardlink", "pkg/b"), ("pkg/b", "hardlink", "pkg/a")],
    "hardlink-to-later-file": [("pkg/h", "hardlink", "pkg/f"), ("pkg/f", "file", b"x")],
    "hardlink-to-directory": [("pkg/d", "dir"), ("pkg/h", "hardlink", "pkg/d")],
    "symlink-to-itself-over-directory": [("pkg/a", "dir"), ("pkg/a", "symlink", "a")],
    "file-over-directory": [("pkg/a", "dir"), ("pkg/a", "file", b"x")],
    "symlink-to-itself-below-a-file": [("pkg/a", "file", b"x"), ("pkg/a/b", "symlink", "b")],
}


@pytest.mark.parametrize("entries", BAD_TARS.values(), ids=BAD_TARS.keys())
def test_bad_tar_is_refused(tmp_path, dest, entries) -> None:
    archive = make_tar(tmp_path / "in.tar.gz", entries)
    with pytest.raises(UnsafeArchive) as exc:
        unpack(archive, dest, strip=1, label="demo: sources[0]")
    assert str(exc.value).startswith("demo: sources[0]: ")
    assert outside(tmp_path) == []
    assert not Path("/tmp/lwrecipe-evil").exists()


def test_zip_traversal_is_refused(tmp_path, dest) -> None:
    with zipfile.ZipFile(tmp_path / "in.zip", "w") as zf:
        zf.writestr("pkg/ok.txt", "fine")
        zf.writestr("pkg/../../evil.txt", "bad")
    with pytest.raises(UnsafeArchive, match="'..'"):
        unpack(tmp_path / "in.zip", dest, strip=1)
    assert outside(tmp_path) == []


def test_zip_symlink_escape_is_refused(tmp_path, dest) -> None:
    with zipfile.ZipFile(tmp_path / "in.zip", "w") as zf:
        info = zipfile.ZipInfo("pkg/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "../../../etc")
    with pytest.raises(UnsafeArchive, match="symlink points outside"):
        unpack(tmp_path / "in.zip", dest, strip=1)


def test_zip_unpacks_with_modes(tmp_path, dest) -> None:
    with zipfile.ZipFile(tmp_path / "in.zip", "w") as zf:
        info = zipfile.ZipInfo("pkg/run.sh")
        info.external_attr = (stat.S_IFREG | 0o755) << 16
        zf.writestr(info, "#!/bin/sh\n")
        zf.writestr("pkg/doc/readme", "hi")
    unpack(tmp_path / "in.zip", dest, strip=1)
    assert (dest / "run.sh").stat().st_mode & 0o777 == 0o755
    assert (dest / "doc" / "readme").read_text() == "hi"


GOOD = [("pkg", "dir"), ("pkg/a.txt", "file", b"a"), ("pkg/bin/run", "file", b"#!", 0o775),
        ("pkg/sub/link", "symlink", "../a.txt"), ("pkg/hard", "hardlink", "pkg/a.txt"),
        ("pkg/hard2", "hardlink", "pkg/hard")]


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz", "zst"])
def test_good_tar_every_compression(tmp_path, dest, mode) -> None:
    if mode == "zst":
        raw = make_tar(tmp_path / "in.tar", GOOD, "w")
        archive = tmp_path / "in.tar.zst"
        archive.write_bytes(zstandard.ZstdCompressor().compress(raw.read_bytes()))
    else:
        archive = make_tar(tmp_path / "in.tar.gz", GOOD, mode)
    unpack(archive, dest, strip=1)
    assert (dest / "a.txt").read_bytes() == b"a"
    assert os.readlink(dest / "sub" / "link") == "../a.txt"
    assert (dest / "hard").read_bytes() == (dest / "hard2").read_bytes() == b"a"
    assert (dest / "bin" / "run").stat().st_mode & 0o777 == 0o755
    assert (dest / "a.txt").stat().st_mode & 0o777 == 0o644


def test_tree_does_not_depend_on_umask(tmp_path) -> None:
    archive = make_tar(tmp_path / "in.tar.gz", GOOD)
    modes = []
    for umask in (0o022, 0o077):
        old = os.umask(umask)
        try:
            target = tmp_path / f"t{umask}"
            unpack(archive, target, strip=0)
        finally:
            os.umask(old)
        modes.append(sorted((str(p.relative_to(target)), p.lstat().st_mode) for p in target.rglob("*")))
    assert modes[0] == modes[1]


def test_kind_is_read_from_bytes(tmp_path) -> None:
    plain = tmp_path / "x.tar.gz"
    plain.write_bytes(b"just text")
    assert archive_kind(plain) is None
    with pytest.raises(UnsafeArchive, match="not an archive"):
        unpack(plain, tmp_path / "d")


def test_corrupt_archive_is_a_clear_error(tmp_path) -> None:
    bad = tmp_path / "in.tar.gz"
    bad.write_bytes(b"\x1f\x8b" + os.urandom(100))
    with pytest.raises(UnsafeArchive, match="cannot unpack"):
        unpack(bad, tmp_path / "d")
