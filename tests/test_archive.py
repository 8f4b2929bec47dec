"""The canonical archive: byte-compatible with tarfile's PAX output, and read back safely."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwrecipe.core.errors import UnsafeArchive
from lwrecipe.store.archive import extract_canonical, tree_sha256, write_tree


def make_tree(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_bytes(b"#!/bin/sh\n" + b"x" * 70000)
    (root / "bin" / "tool").chmod(0o700)
    (root / "share" / "deep" / ("long-" * 30)).mkdir(parents=True)
    (root / "share" / "deep" / ("long-" * 30) / "ünïcode.txt").write_text("text\n")
    (root / "empty").write_bytes(b"")
    (root / "link").symlink_to("bin/tool")
    os.link(root / "bin" / "tool", root / "hard")
    return root


def reference_archive(root: Path, mtime: int) -> bytes:
    """What tarfile itself writes for the same entries (the format's definition)."""
    from lwrecipe.store.archive import _tarinfo, iter_tree

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for entry in iter_tree(root):
            info = _tarinfo(entry, mtime)
            if entry.kind == "file":
                with open(root / entry.rel, "rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    return buf.getvalue()


def test_writer_matches_tarfile_byte_for_byte(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t")
    out = io.BytesIO()
    write_tree(root, out, 1234)
    assert out.getvalue() == reference_archive(root, 1234)


def test_entries_come_in_byte_order_of_their_paths(tmp_path: Path) -> None:
    """Names that sort around "/" ('.' and '-' before it, '0' and 'é' after it)
    in nested directories: the streamed order is a plain sort of all paths."""
    from lwrecipe.store.archive import iter_tree

    root = tmp_path / "t"
    for rel in ("a/x", "a/x.y/z", "a.c", "a-b/c", "a0", "a/é/q", "b", "a/x-/y", "ab/c/d/e"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    (root / "a" / "x.y" / "sub").mkdir()
    expected = sorted(
        (os.path.relpath(os.path.join(d, n), root) for d, ds, fs in os.walk(root) for n in ds + fs), key=os.fsencode
    )
    assert [entry.rel for entry in iter_tree(root)] == expected
    assert [entry.rel for entry in iter_tree(root, exclude=("a",))] == [
        r for r in expected if not r.startswith("a/") and r != "a"
    ]


def test_round_trip(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t")
    data = io.BytesIO()
    write_tree(root, data, 315532800)
    dest = tmp_path / "out"
    dest.mkdir()
    stream = io.BytesIO(data.getvalue())
    assert extract_canonical(stream.read, dest) == 9
    assert tree_sha256(dest, 315532800) == tree_sha256(root, 315532800)
    assert stat.S_IMODE((dest / "bin" / "tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "empty").stat().st_mode) == 0o644
    assert (dest / "bin").stat().st_mtime == 315532800
    assert os.readlink(dest / "link") == "bin/tool"
    assert (dest / "hard").stat().st_ino == (dest / "bin" / "tool").stat().st_ino


def evil(*members: tuple[str, bytes, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, target in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = target
            if kind == tarfile.REGTYPE:
                info.size = 1
                tar.addfile(info, io.BytesIO(b"x"))
            else:
                tar.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize(
    "members, message",
    [
        ([("../escape", tarfile.REGTYPE, "")], "not a plain relative path"),
        ([("/etc/passwd", tarfile.REGTYPE, "")], "not a plain relative path"),
        ([("a/./b", tarfile.REGTYPE, "")], "not a plain relative path"),
        ([("up", tarfile.SYMTYPE, "/etc"), ("up/passwd", tarfile.REGTYPE, "")], "through a symlink"),
        ([("h", tarfile.LNKTYPE, "/etc/passwd")], "not an earlier file"),
        ([("dev", tarfile.CHRTYPE, "")], "type an output may not have"),
        ([("fifo", tarfile.FIFOTYPE, "")], "type an output may not have"),
    ],
)
def test_unsafe_entries_are_refused(tmp_path: Path, members, message: str) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UnsafeArchive, match=message):
        extract_canonical(io.BytesIO(evil(*members)).read, dest)
    assert not (tmp_path / "escape").exists()


def test_truncated_archive_is_refused(tmp_path: Path) -> None:
    data = io.BytesIO()
    write_tree(make_tree(tmp_path / "t"), data, 0)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UnsafeArchive, match="ends in the middle"):
        extract_canonical(io.BytesIO(data.getvalue()[:3000]).read, dest)


def test_header_parser_agrees_with_tarfile(tmp_path: Path) -> None:
    from lwrecipe.store.archive import parse_header

    data = io.BytesIO()
    write_tree(make_tree(tmp_path / "t"), data, 1234)
    with tarfile.open(fileobj=io.BytesIO(data.getvalue()), mode="r:") as tar:
        members = tar.getmembers()
    blocks = data.getvalue()
    for member in members:
        ours = parse_header(blocks[member.offset : member.offset + 512])
        raw = tarfile.TarInfo.frombuf(blocks[member.offset : member.offset + 512], "utf-8", "surrogateescape")
        assert (ours.name, ours.mode, ours.size, ours.mtime, ours.type, ours.linkname) == (
            raw.name,
            raw.mode,
            raw.size,
            raw.mtime,
            raw.type,
            raw.linkname,
        )
    with pytest.raises(UnsafeArchive, match="checksum"):
        parse_header(b"x" + blocks[1:512])


@settings(max_examples=400, deadline=None)
@given(
    rel=st.text(st.characters(codec="utf-8", exclude_characters="\0/"), min_size=1, max_size=60)
    | st.from_regex(r"[a-z0-9._-]{1,40}(/[a-zA-Z0-9._+-]{1,40}){0,4}", fullmatch=True),
    kind=st.sampled_from(["dir", "file", "symlink", "hardlink"]),
    mode=st.sampled_from([0o644, 0o755]),
    size=st.integers(0, 8**11 + 5) | st.integers(0, 1 << 20),
    target=st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=120),
    mtime=st.integers(0, 8**11 + 5),
)
def test_header_matches_tarfile(rel: str, kind: str, mode: int, size: int, target: str, mtime: int) -> None:
    from lwrecipe.store.archive import Entry, _tarinfo, header

    entry = Entry(rel, kind, mode, size if kind == "file" else 0, target if kind in ("symlink", "hardlink") else "")
    assert header(entry, mtime) == _tarinfo(entry, mtime).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
