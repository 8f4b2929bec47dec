"""Git sources pinned by commit, from a local bare repository over file://."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from lwrecipe.errors import FetchError, OfflineMissing
from lwrecipe.inputs.fetch import Downloader, make_client
from lwrecipe.inputs.gitsrc import fetch_tree, read_member
from lwrecipe.recipes.graph import load_graph
from lwrecipe.inputs.sources import fetch_recipes, lay_out
from lwrecipe.store.store import Store

PATCH = b"--- a/hello.c\n+++ b/hello.c\n@@ -1 +1 @@\n-old\n+new\n"


def git(*args: str, cwd: Path) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e", "GIT_AUTHOR_DATE": "2020-01-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2020-01-01T00:00:00Z", "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def bare(tmp_path) -> tuple[str, str, str]:
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    (work / "patches").mkdir()
    (work / "patches" / "fix.patch").write_bytes(PATCH)
    (work / "run.sh").write_text("#!/bin/sh\n")
    (work / "run.sh").chmod(0o755)
    (work / "link").symlink_to("run.sh")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "one", cwd=work)
    first = git("rev-parse", "HEAD", cwd=work)
    (work / "later.txt").write_text("later")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "two", cwd=work)
    bare_dir = tmp_path / "repo.git"
    git("clone", "-q", "--bare", str(work), str(bare_dir), cwd=tmp_path)
    return f"file://{bare_dir}", first, git("rev-parse", "HEAD", cwd=work)


def test_fetch_exact_commit_and_export_canonically(tmp_path, bare) -> None:
    url, first, second = bare
    a = fetch_tree(Store(tmp_path / "c1"), "x: sources[0]", url, first)
    b = fetch_tree(Store(tmp_path / "c2"), "x: sources[0]", url, first)
    assert a.sha256 == b.sha256 and a.origin == url
    assert read_member(a.path, "patches/fix.patch") == PATCH
    assert read_member(a.path, "later.txt") is None  # the second commit's file is not in the first
    assert fetch_tree(Store(tmp_path / "c1"), "x", url, first).origin == "cache"
    assert fetch_tree(Store(tmp_path / "c1"), "x", url, second).sha256 != a.sha256


def test_unknown_commit_is_a_clear_error(tmp_path, bare) -> None:
    url, _, _ = bare
    with pytest.raises(FetchError) as exc:
        fetch_tree(Store(tmp_path / "c"), "x: sources[0]", url, "1" * 40)
    assert "x: sources[0]: git" in str(exc.value)


def test_offline_git(tmp_path, bare) -> None:
    url, first, _ = bare
    with pytest.raises(OfflineMissing):
        fetch_tree(Store(tmp_path / "c"), "x", url, first, offline=True)


def test_recipe_with_git_source_and_patch_inside_it(project, bare, tmp_path) -> None:
    url, first, _ = bare
    project.recipe("demo", f'''schema = 1
[package]
name = "demo"
version = "1"
license = "MIT"
[[sources]]
name = "tools"
git = "{url}"
rev = "{first}"
unpack = false
[[patches]]
source = "tools"
path = "patches/fix.patch"
[build]
script = "true"
''')
    store = Store(tmp_path / "cache").ensure()
    graph = load_graph(["demo"])
    with make_client() as client:
        got = fetch_recipes([graph.recipes["demo"]], store, Downloader(store, client))
    assert got.source_patches[("demo", 0)] == hashlib.sha256(PATCH).hexdigest()
    tree = tmp_path / "build" / "src"
    lay_out(graph.recipes["demo"], got, tree)
    beside = tmp_path / "build" / "tools"
    assert (beside / "patches" / "fix.patch").read_bytes() == PATCH
    assert (beside / "run.sh").stat().st_mode & 0o777 == 0o755 and (beside / "link").is_symlink()


def test_the_real_linux_wasm_source_comes_from_a_git_mirror(tmp_path, monkeypatch) -> None:
    """An air-gapped site serves the pinned linux-wasm commit from a local bare clone
    through LWRECIPE_GIT_MIRRORS, the real recipes unedited; every patch they name is
    read from that tree (git ran with a cleared environment: no mirror was possible)."""
    from lwrecipe.inputs.gitsrc import git_locations
    from lwrecipe.recipes.graph import load_graph
    from lwrecipe.recipes.recipe import GitSource as Git, SourcePatch
    from tests.conftest import REPO, upstream

    bare = upstream("linux-wasm.git")
    clone = tmp_path / "linux-wasm.git"  # a copy the running user owns (git refuses others' repositories)
    shutil.copytree(bare, clone, symlinks=True)
    graph = load_graph([str(REPO / "recipes" / "runtime.toml")])
    gits = {(s.git, s.rev) for r in graph.recipes.values() for s in r.doc.sources if isinstance(s, Git)}
    assert len(gits) == 1
    [(url, rev)] = gits
    monkeypatch.setenv("LWRECIPE_GIT_MIRRORS", f"{url}={clone}")
    assert git_locations(url) == [str(clone), url]
    store = Store(tmp_path / "cache").ensure()
    tree = fetch_tree(store, "linux-wasm", url, rev)
    assert tree.origin == str(clone)
    named = [(r.name, p.path) for r in graph.recipes.values() for p in r.doc.patches if isinstance(p, SourcePatch)]
    assert named and all(read_member(tree.path, path) for _, path in named), named
