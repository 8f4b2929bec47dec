"""The initramfs packer, checked with GNU cpio: listing, extraction, reproducibility."""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from lwrecipe.initramfs import Device

pytestmark = pytest.mark.skipif(shutil.which("cpio") is None, reason="GNU cpio is not installed")

DEVICES = ["dev/console:c:5:1:600", "dev/null:c:1:3", "dev/tty:c:5:0", "dev/ptmx:c:5:2"]
DIRS = ["proc", "sys", "dev/pts", "tmp", "root"]


def make_root(where: Path, umask: int) -> Path:
    old = os.umask(umask)
    try:
        (where / "bin").mkdir(parents=True)
        busybox = where / "bin" / "busybox"
        busybox.write_bytes(b"\x7fELF pretend busybox" * 100)
        busybox.chmod(0o755 & ~umask)
        (where / "bin" / "sh").symlink_to("busybox")
        os.link(busybox, where / "bin" / "ls")
        (where / "etc").mkdir()
        (where / "etc" / "motd").write_text("welcome\n")
        (where / "init").write_text("#!/bin/sh\nexec /bin/sh\n")
        (where / "init").chmod(0o755 & ~umask)
    finally:
        os.umask(old)
    return where


def pack(root: Path, out: Path, *extra: str, umask: int = 0o022) -> bytes:
    args = [sys.executable, "-m", "lwrecipe.initramfs", "--root", str(root), "--out", str(out), "--mtime", "315532800"]
    for d in DEVICES:
        args += ["--device", d]
    for d in DIRS:
        args += ["--dir", d]
    proc = subprocess.run([*args, *extra], capture_output=True, text=True, preexec_fn=lambda: os.umask(umask))
    assert proc.returncode == 0, proc.stderr
    return out.read_bytes()


def test_cpio_lists_exactly_the_expected_entries(tmp_path: Path) -> None:
    data = pack(make_root(tmp_path / "root", 0o022), tmp_path / "i.cpio.gz")
    listing = (
        subprocess.run(["cpio", "-itv", "--quiet"], input=gzip.decompress(data), capture_output=True, check=True)
        .stdout.decode()
        .splitlines()
    )
    entries = {line.split()[-1] if " -> " not in line else line.split()[-3]: line for line in listing}
    assert sorted(entries) == sorted(
        [
            "bin",
            "bin/busybox",
            "bin/ls",
            "bin/sh",
            "dev",
            "dev/console",
            "dev/null",
            "dev/ptmx",
            "dev/pts",
            "dev/tty",
            "etc",
            "etc/motd",
            "init",
            "proc",
            "root",
            "sys",
            "tmp",
        ]
    )
    assert entries["dev/console"].startswith("crw-------") and " 5,   1 " in entries["dev/console"]
    assert entries["dev/null"].startswith("crw-rw-rw-") and " 1,   3 " in entries["dev/null"]
    assert " 5,   0 " in entries["dev/tty"] and " 5,   2 " in entries["dev/ptmx"]
    assert entries["bin/sh"].startswith("lrwxrwxrwx") and entries["bin/sh"].endswith("bin/sh -> busybox")
    assert entries["bin/busybox"].startswith("-rwxr-xr-x   2 root     root")  # hardlinked with bin/ls
    assert entries["etc/motd"].startswith("-rw-r--r--")
    assert entries["proc"].startswith("drwxr-xr-x")
    assert all(" Jan  1  1980 " in line for line in listing)


def test_gzip_header_has_no_name_and_no_time(tmp_path: Path) -> None:
    data = pack(make_root(tmp_path / "root", 0o022), tmp_path / "i.cpio.gz")
    assert data[:3] == b"\x1f\x8b\x08" and data[3] & 0x08 == 0 and data[4:8] == b"\0\0\0\0"


def test_bit_identical_across_runs_and_umasks(tmp_path: Path) -> None:
    first = pack(make_root(tmp_path / "a", 0o022), tmp_path / "a.cpio.gz", umask=0o022)
    second = pack(make_root(tmp_path / "b", 0o077), tmp_path / "b.cpio.gz", umask=0o077)
    third = pack(make_root(tmp_path / "c", 0o022), tmp_path / "c.cpio.gz")
    assert first == second == third


@pytest.mark.root  # extracting device nodes
def test_cpio_extracts_the_same_tree(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root", 0o022)
    data = pack(root, tmp_path / "i.cpio.gz")
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(
        ["cpio", "-idm", "--quiet", "--no-absolute-filenames"], input=gzip.decompress(data), cwd=out, check=True
    )
    for rel in ("bin/busybox", "etc/motd", "init"):
        assert (out / rel).read_bytes() == (root / rel).read_bytes()
    assert (out / "bin" / "ls").stat().st_ino == (out / "bin" / "busybox").stat().st_ino
    assert (out / "bin" / "ls").read_bytes() == (root / "bin" / "busybox").read_bytes()
    assert os.readlink(out / "bin" / "sh") == "busybox"
    console = (out / "dev" / "console").lstat()
    assert stat.S_ISCHR(console.st_mode) and os.major(console.st_rdev) == 5 and os.minor(console.st_rdev) == 1
    assert stat.S_IMODE(console.st_mode) == 0o600
    assert (out / "init").stat().st_mtime == 315532800
    for d in DIRS:
        assert (out / d).is_dir()


def test_special_files_in_the_tree_are_refused(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root", 0o022)
    os.mkfifo(root / "fifo")
    proc = subprocess.run(
        [sys.executable, "-m", "lwrecipe.initramfs", "--root", str(root), "--out", str(tmp_path / "x.gz")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "special files in the tree are refused" in proc.stderr
    assert not (tmp_path / "x.gz").exists() and not (tmp_path / "x.gz.part").exists()


@pytest.mark.parametrize("text", ["dev/x", "dev/x:p:1:2", "../x:c:1:2", "dev/x:c:a:2"])
def test_bad_device_specs(text: str) -> None:
    with pytest.raises(ValueError):
        Device.parse(text)


def upstream_base(tmp_path: Path) -> Path:
    """upstream's patches/initramfs/initramfs-base.cpio at the pinned commit."""
    from tests.conftest import upstream

    data = subprocess.run(
        [
            "git",
            "--git-dir",
            str(upstream("linux-wasm.git")),
            "-c",
            "safe.directory=*",
            "show",
            "970e08b0d605e63e36a99d22596e8899a1dab8b5:patches/initramfs/initramfs-base.cpio",
        ],
        capture_output=True,
        check=True,
    ).stdout
    path = tmp_path / "initramfs-base.cpio"
    path.write_bytes(data)
    return path


def listing(cpio_bytes: bytes) -> list[list[str]]:
    """GNU cpio's long listing: mode string, links, owner, group, size or device numbers, ..., name."""
    out = subprocess.run(
        ["cpio", "-itv", "--quiet", "--numeric-uid-gid"],
        input=cpio_bytes,
        capture_output=True,
        check=True,
        env={**os.environ, "TZ": "UTC", "LC_ALL": "C"},
    ).stdout.decode()
    return [line.split() for line in out.splitlines()]


def test_parts_are_appended_as_upstreams_cpio_dash_a_does(tmp_path: Path) -> None:
    """The base's entries first as they are (upstream's device node included, made
    here without root), then the tree as `find .` adds it, then the init."""
    base = upstream_base(tmp_path)
    root = make_root(tmp_path / "busybox", 0o022)
    (root / "init").unlink()
    init = tmp_path / "init"
    init.write_text("#!/bin/sh\nexec /sbin/init -s\n")
    init.chmod(0o755)
    out = tmp_path / "out.cpio"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lwrecipe.initramfs",
            "--base",
            str(base),
            "--tree",
            str(root),
            "--file",
            f"init={init}",
            "--out",
            str(out),
            "--no-gzip",
            "--mtime",
            "315532800",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    ours, theirs = listing(out.read_bytes()), listing(base.read_bytes())
    assert [(row[0], row[-1]) for row in ours[: len(theirs)]] == [(row[0], row[-1]) for row in theirs]
    console = next(row for row in ours if row[-1] == "dev/console")
    assert console[0] == "crw-r--r--" and console[4:6] == ["5,", "1"]
    assert all(row[2:4] == ["0", "0"] for row in ours)
    rest = [(row[0][0], row[-3] if row[0][0] == "l" else row[-1]) for row in ours[len(theirs) :]]
    assert rest == [
        ("d", "."),
        ("d", "bin"),
        ("-", "bin/busybox"),
        ("-", "bin/ls"),
        ("l", "bin/sh"),
        ("d", "etc"),
        ("-", "etc/motd"),
        ("-", "init"),
    ]
    assert ours[-1][0] == "-rwxr-xr-x"
    extracted = tmp_path / "x"
    extracted.mkdir()
    subprocess.run(
        ["cpio", "-id", "--quiet", "--no-preserve-owner"],
        input=out.read_bytes(),
        cwd=extracted,
        check=False,
        capture_output=True,
    )
    assert (extracted / "init").read_bytes() == init.read_bytes()
    assert os.path.samefile(extracted / "bin" / "busybox", extracted / "bin" / "ls")


def test_a_bad_base_archive_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cpio"
    bad.write_bytes(b"070701" + b"Z" * 200)
    proc = subprocess.run(
        [sys.executable, "-m", "lwrecipe.initramfs", "--base", str(bad), "--out", str(tmp_path / "o.cpio.gz")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and proc.stderr == f"error: initramfs: {bad}: bad cpio header at byte 0\n"
