"""The hard links an executor reports for an output are made again here only
inside the output: a hostile list cannot reach a file outside it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lwrecipe.build.remote_build import _relink
from lwrecipe.core.errors import BuildFailed


def listing(*pairs: tuple[str, str]) -> bytes:
    return b"".join(f"{inode} {path}".encode() + b"\0" for inode, path in pairs)


def test_hard_links_are_made_again_first_name_in_byte_order_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "b").mkdir(parents=True)
    for name in ("b/z", "a", "b/y"):
        (out / name).write_text("same\n")
    _relink(out, listing(("7", "b/z"), ("7", "a"), ("7", "b/y"), ("9", "b/only")), "r")
    inodes = {os.stat(out / n).st_ino for n in ("a", "b/y", "b/z")}
    assert len(inodes) == 1 and os.stat(out / "a").st_nlink == 3


@pytest.mark.parametrize("hostile", ["link/secret", "/SECRET", "../secret", "b/../../secret"])
def test_a_list_naming_files_outside_the_output_is_refused(tmp_path: Path, hostile: str) -> None:
    outside = tmp_path / "secret"
    outside.write_text("host file\n")
    out = tmp_path / "out"
    (out / "b").mkdir(parents=True)
    (out / "a").write_text("x\n")
    (out / "link").symlink_to(tmp_path)
    hostile = hostile.replace("/SECRET", str(outside))
    with pytest.raises(BuildFailed, match="not a file of the output; refused"):
        _relink(out, listing(("1", "a"), ("1", hostile)), "r")
    assert outside.read_text() == "host file\n" and os.stat(outside).st_nlink == 1
