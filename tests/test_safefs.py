"""safefs: nothing below a root is reached through a link, with openat2 and without."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lwrecipe.core import safefs
from lwrecipe.core.safefs import Beneath, HeldDirs, LinkRefused


@pytest.fixture(params=["openat2", "walk"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "walk":
        monkeypatch.setattr(safefs, "_openat2", None)  # the kernel without openat2
    elif safefs._openat2 is None:
        pytest.skip("this kernel has no openat2")
    return str(request.param)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/ with a real dir, a link to an outside dir, a link to an outside file, a
    relative link that stays inside; outside/ holds the victim."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep")
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "real" / "f").write_text("inside")
    (root / "out").symlink_to(outside)
    (root / "file-link").symlink_to(outside / "victim")
    (root / "inner").symlink_to("real")
    return root


@pytest.mark.parametrize(
    "rel", ["out/victim", "file-link", "inner/f", "out/new", "../outside/victim", "/etc/passwd", "real/../out/victim"]
)
def test_no_link_is_followed_anywhere(mode: str, tree: Path, rel: str) -> None:
    with Beneath(tree) as root, pytest.raises(OSError) as exc:
        os.close(root.open(rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC))
    assert isinstance(exc.value, LinkRefused), exc.value
    assert (tree.parent / "outside" / "victim").read_text() == "keep"
    assert not (tree.parent / "outside" / "new").exists()


def test_real_paths_work(mode: str, tree: Path) -> None:
    with Beneath(tree) as root:
        assert root.read("real/f", 100) == b"inside"
        with root.opendir("a/b/c", create=True) as d:
            os.close(d.open("x", os.O_WRONLY | os.O_CREAT, 0o600))
        assert (tree / "a/b/c/x").is_file()
        assert root.lstat("out") is not None and root.lstat("missing") is None
        names = {e.name: e.is_symlink() for e in root.entries()}
        assert names["out"] and not names["real"]


def test_opendir_create_refuses_a_link_on_the_way(mode: str, tree: Path) -> None:
    with Beneath(tree) as root, pytest.raises(LinkRefused):
        root.opendir("out/made", create=True)
    assert not (tree.parent / "outside" / "made").exists()


def test_unlink_removes_only_regular_files(mode: str, tree: Path) -> None:
    with Beneath(tree) as root:
        assert root.unlink_file("file-link") is False  # a link is not removed as a file
        assert root.unlink_file("real") is False
        with pytest.raises(LinkRefused):
            root.unlink_file("out/victim")
        assert root.unlink_file("real/f") is True
    assert (tree.parent / "outside" / "victim").read_text() == "keep"


def test_replace_replaces_a_link_rather_than_writing_through_it(mode: str, tree: Path) -> None:
    with Beneath(tree) as root:
        fd = root.open("staged", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"new")
        os.close(fd)
        root.replace("staged", "file-link")
    assert (tree / "file-link").read_text() == "new" and not (tree / "file-link").is_symlink()
    assert (tree.parent / "outside" / "victim").read_text() == "keep"


@pytest.mark.parametrize(
    "rel", ["out/victim", "file-link", "../outside/victim", "/etc/passwd", "up/outside/victim", "back/f", "loop"]
)
def test_open_inside_follows_no_link_out_of_the_root(mode: str, tree: Path, rel: str) -> None:
    (tree / "up").symlink_to("..")
    (tree / "back").symlink_to(f"../{tree.name}/real")  # leaves, then comes back: refused all the same
    (tree / "loop").symlink_to("loop")
    with Beneath(tree) as root, pytest.raises(LinkRefused):
        os.close(root.open_inside(rel, os.O_RDONLY))


def test_open_inside_follows_links_that_stay_inside(mode: str, tree: Path) -> None:
    (tree / "real" / "g").symlink_to("../inner/f")  # a chain of two links, both inside
    (tree / "real" / "sub").mkdir()
    (tree / "real" / "sub" / "h").symlink_to("../../real/./f")
    with Beneath(tree) as root:
        for rel in ("inner/f", "real/g", "real/sub/h"):
            fd = root.open_inside(rel, os.O_RDONLY)
            with os.fdopen(fd, "rb") as fh:
                assert fh.read() == b"inside", rel
        os.close(root.open_inside("inner", os.O_RDONLY | os.O_DIRECTORY))
        os.close(root.open_inside("", os.O_RDONLY | os.O_DIRECTORY))


def test_held_dirs_make_directories_and_refuse_links_and_files(tree: Path) -> None:
    with Beneath(tree) as root, HeldDirs(root, limit=2) as dirs:
        for parts in [("a", "b", "c"), ("a", "x"), ("a", "b", "c"), ("d",)]:  # past the limit: opened again
            os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=dirs.fd(parts, create=True)))
            assert (tree.joinpath(*parts) / "f").is_file()
            assert oct(tree.joinpath(*parts).stat().st_mode & 0o777) == "0o755"
        with pytest.raises(LinkRefused) as exc:
            dirs.fd(("out", "made"), create=True)
        assert exc.value.rel == "out"
        with pytest.raises(LinkRefused):
            dirs.fd(("inner",))  # a link that stays inside is refused all the same
        with pytest.raises(NotADirectoryError):
            dirs.fd(("real", "f", "deeper"), create=True)
        assert dirs.lstat(("real", "missing")) is None and dirs.lstat(("nowhere", "x")) is None
    assert not (tree.parent / "outside" / "made").exists()


@pytest.mark.parametrize(
    "link, target, leaves",
    [
        ("x/l", "../real/f", False),
        ("l", "missing/../real", False),
        ("l", "inner/f", False),
        ("l", "..", True),
        ("real/l", "../..", True),
        ("l", "/etc", True),
        ("l", "out", True),
        ("l", "inner/../..", True),  # inner is real/: real/.. is the root, one more is out
        ("l", "up/x/../..", False),  # up -> real/sub/.. is real/: x/../.. from there is the root
        ("l", "deep/t/../x", True),  # lexically deep/x; deep/t -> .. is the root, and up from it
        ("l", "self", True),  # a loop: more than 40 links
        ("l", "missing/x/../../..", True),  # dangling: judged by where it would point
    ],
)
def test_link_leaves_resolves_as_the_kernel_does(tree: Path, link: str, target: str, leaves: bool) -> None:
    (tree / "real" / "sub").mkdir()
    (tree / "up").symlink_to("real/sub/..")
    (tree / "self").symlink_to("self")
    (tree / "x").mkdir()
    (tree / "deep").mkdir()
    (tree / "deep" / "t").symlink_to("..")
    with Beneath(tree) as root, HeldDirs(root) as dirs:
        assert dirs.link_leaves(tuple(link.split("/")), target) is leaves
