"""Safe unpacking: adversarial archives are refused and nothing lands outside the tree."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
import zstandard

from lwrecipe.core.errors import UnsafeArchive
from lwrecipe.inputs.unpack import archive_kind, normalise_tree, unpack
from tests.conftest import upstream


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
            info.type = {
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "chr": tarfile.CHRTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[kind]
            info.mode = 0o644 if kind == "hardlink" else 0o755
            if kind in ("symlink", "hardlink"):
                info.linkname = payload
            tar.addfile(info)
    return path


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


GOOD = [
    ("pkg", "dir"),
    ("pkg/a.txt", "file", b"a"),
    ("pkg/bin/run", "file", b"#!", 0o775),
    ("pkg/sub/link", "symlink", "../a.txt"),
    ("pkg/hard", "hardlink", "pkg/a.txt"),
    ("pkg/hard2", "hardlink", "pkg/hard"),
]


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


# Hostile archives that go through links: every entry is written through a directory
# fd, and an entry whose path goes through a link (one the archive made, or one that
# was there) is refused; so is a link that resolves outside once the archive is complete.


def make_zip(path: Path, entries: list[tuple]) -> Path:
    """entries as make_tar's: (name, kind, payload) with kind file|dir|symlink."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, kind, *rest in entries:
            payload = rest[0] if rest else b""
            if kind == "dir":
                zf.writestr(zipfile.ZipInfo(name.rstrip("/") + "/"), b"")
                continue
            info = zipfile.ZipInfo(name)
            info.external_attr = ((stat.S_IFLNK | 0o777) if kind == "symlink" else (stat.S_IFREG | 0o644)) << 16
            zf.writestr(info, payload.encode() if isinstance(payload, str) else payload)
    return path


def realpath_overflow(dest: Path) -> list[tuple]:
    """CVE-2025-4517's chain (CPython's test_realpath_limit_attack): short links to long
    directories, so that os.path.realpath, expanding them, passes PATH_MAX, gives up
    resolving the last link and reads `escape` as inside `dest` — while the kernel,
    following the short names, resolves `escape` to dest's parent."""
    steps = "abcdefghijklmnop"
    component = "d" * ((os.pathconf(dest.parent, "PC_PATH_MAX") - len(str(dest)) - 1) // (len(steps) + 1))
    entries: list[tuple] = []
    path = ""
    for step in steps:
        entries += [(os.path.join(path, component), "dir"), (os.path.join(path, step), "symlink", component)]
        path = os.path.join(path, step)
    last = os.path.join(*steps, "l" * 254)
    entries += [
        (last, "symlink", os.path.join(*[".."] * len(steps))),
        ("escape", "symlink", os.path.join(last, "..")),
        ("escape/planted", "file", b"owned\n"),
    ]
    return entries


def nothing_outside(tmp_path: Path, dest: Path) -> None:
    """No entry anywhere below tmp_path but the archive and dest's own tree."""
    for path in tmp_path.rglob("*"):
        assert path.name.startswith("in.") or path in (dest, dest.parent) or dest in path.parents, path


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_a_realpath_overflowing_link_chain_cannot_write_outside(tmp_path, dest, kind) -> None:
    """The old realpath check was fooled: `planted` landed in dest's parent."""
    dest.parent.mkdir(parents=True)
    entries = realpath_overflow(dest)
    archive = make_tar(tmp_path / "in.tar", entries, "w") if kind == "tar" else make_zip(tmp_path / "in.zip", entries)
    with pytest.raises(UnsafeArchive, match="^demo: "):
        unpack(archive, dest, 0, "demo")
    nothing_outside(tmp_path, dest)


THROUGH_LINKS = {
    "into-a-sibling": [("sub", "dir"), ("a", "symlink", "sub"), ("a/x", "file", b"x")],
    "self-chain": [("l", "symlink", "."), ("l/l/l/l/x", "file", b"x")],
    "chain-of-two": [("b", "dir"), ("a", "symlink", "b"), ("b/c", "symlink", "."), ("a/c/x", "file", b"x")],
    "absolute": [("a", "symlink", "/tmp"), ("a/lwrecipe-evil", "file", b"x")],
}


@pytest.mark.parametrize("kind", ["tar", "zip"])
@pytest.mark.parametrize("entries", THROUGH_LINKS.values(), ids=THROUGH_LINKS.keys())
def test_an_entry_through_a_link_is_refused(tmp_path, dest, entries, kind) -> None:
    """Nothing is written through a link, not even one the archive made that stays inside."""
    archive = make_tar(tmp_path / "in.tar", entries, "w") if kind == "tar" else make_zip(tmp_path / "in.zip", entries)
    with pytest.raises(UnsafeArchive, match="^demo: .*(symlink|link)"):
        unpack(archive, dest, 0, "demo")
    nothing_outside(tmp_path, dest)
    assert not Path("/tmp/lwrecipe-evil").exists()


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_a_link_later_entries_turn_outward_is_refused(tmp_path, dest, kind) -> None:
    """`a -> x/y/../..` is inside while x is missing; `x -> .` and `y/` then make it dest's parent."""
    entries = [("a", "symlink", "x/y/../.."), ("x", "symlink", "."), ("y", "dir")]
    archive = make_tar(tmp_path / "in.tar", entries, "w") if kind == "tar" else make_zip(tmp_path / "in.zip", entries)
    with pytest.raises(UnsafeArchive, match="^demo: 'a': symlink points outside the tree"):
        unpack(archive, dest, 0, "demo")


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_a_later_entry_replaces_a_link_never_writes_through_it(tmp_path, dest, kind) -> None:
    """A file entry where the archive left a link replaces the link (GNU tar, dpkg); the
    old code wrote through it into the file it named."""
    entries = [("a.txt", "file", b"kept"), ("l", "symlink", "a.txt"), ("l", "file", b"new")]
    archive = make_tar(tmp_path / "in.tar", entries, "w") if kind == "tar" else make_zip(tmp_path / "in.zip", entries)
    unpack(archive, dest, 0, "demo")
    assert (dest / "a.txt").read_bytes() == b"kept"
    assert not (dest / "l").is_symlink() and (dest / "l").read_bytes() == b"new"


def test_a_duplicate_file_entry_is_the_last_one(tmp_path, dest) -> None:
    archive = make_tar(tmp_path / "in.tar", [("f", "file", b"one", 0o755), ("f", "file", b"two")], "w")
    unpack(archive, dest, 0, "demo")
    assert (dest / "f").read_bytes() == b"two" and (dest / "f").stat().st_mode & 0o777 == 0o644


def listing(root: Path, modes: bool = True) -> dict[str, tuple]:
    """Every entry below root: a link's target; a file's bytes, mtime and mode (as
    lwrecipe normalises it: 0755 by the owner's execute bit, else 0644); which
    files share an inode."""
    found: dict[str, tuple] = {}
    inodes: dict[int, str] = {}
    for path in sorted(root.rglob("*")):
        rel, st = str(path.relative_to(root)), path.lstat()
        if stat.S_ISLNK(st.st_mode):
            found[rel] = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            found[rel] = ("dir",)
        else:
            mode = 0o755 if st.st_mode & 0o100 else 0o644
            found[rel] = (
                "file",
                hashlib.sha256(path.read_bytes()).hexdigest(),
                int(st.st_mtime),
                mode if modes else None,
                inodes.setdefault(st.st_ino, rel),
            )
    return found


@pytest.mark.parametrize("name", ["musl-1.2.5.tar.gz", "busybox-1.36.1-git-tag.tar.bz2"])
@pytest.mark.slow
def test_a_real_tarball_unpacks_as_gnu_tar_unpacks_it(tmp_path, name) -> None:
    archive = upstream(f"sources/{name}")
    ours, theirs = tmp_path / "ours", tmp_path / "tar"
    unpack(archive, ours, strip=1)
    theirs.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(theirs), "--strip-components=1"], check=True)
    assert listing(ours) == listing(theirs)
    modes = {p.lstat().st_mode & 0o7777 for p in ours.rglob("*") if not p.is_symlink()}
    assert modes <= {0o755, 0o644}


def test_normalise_tree_changes_modes_below_the_root_only(tmp_path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("x")
    victim.chmod(0o600)
    root = tmp_path / "tree"
    (root / "d" / "e").mkdir(parents=True)
    (root / "d" / "run").write_text("#!")
    (root / "d" / "run").chmod(0o700)
    (root / "d" / "e").chmod(0o700)
    (root / "d" / "link").symlink_to(victim)
    (root / "d" / "up").symlink_to(tmp_path)
    normalise_tree(root)
    assert oct((root / "d" / "run").stat().st_mode & 0o7777) == "0o755"
    assert oct((root / "d" / "e").stat().st_mode & 0o7777) == "0o755"
    assert oct(victim.stat().st_mode & 0o7777) == "0o600"
