"""Git sources pinned by commit, from a local bare repository over file://."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from lwrecipe.core.errors import FetchError, OfflineMissing
from lwrecipe.inputs.fetch import Downloader, make_client
from lwrecipe.inputs.gitsrc import commit_path, extract_to, fetch_tree, read_member, ref_path, tree_id
from lwrecipe.inputs.mirrors import Mirrors
from lwrecipe.inputs.sources import fetch_recipes, lay_out
from lwrecipe.recipes.graph import load_graph
from lwrecipe.store.store import Store

PATCH = b"--- a/hello.c\n+++ b/hello.c\n@@ -1 +1 @@\n-old\n+new\n"


def git(*args: str, cwd: Path) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
        "GIT_AUTHOR_DATE": "2020-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2020-01-01T00:00:00Z",
        "PATH": "/usr/bin:/bin",
        "HOME": str(cwd),
    }
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


@pytest.mark.slow
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


def test_offline_git_reads_only_repositories_on_this_machine(tmp_path, bare) -> None:
    url, first, _ = bare
    remote = "https://127.0.0.1:9/repo.git"
    with pytest.raises(OfflineMissing, match="--offline forbids"):
        fetch_tree(Store(tmp_path / "c"), "x", remote, first, offline=True)
    mirrors = Mirrors(git=((remote, url),))
    assert fetch_tree(Store(tmp_path / "c"), "x", remote, first, offline=True, mirrors=mirrors).origin == url


@pytest.mark.slow
def test_tree_id_is_the_tree_git_names_in_the_commit(tmp_path, bare) -> None:
    """The mirror archive check hashes a tree as git does: here on a commit whose names
    sort differently as files and as directories ('a.b' before 'a/', 'a0' after)."""
    work = tmp_path / "names"
    work.mkdir()
    git("init", "-q", cwd=work)
    for rel, text in (("a.b", "1"), ("a/x", "2"), ("a0", "3"), ("a/b/c.sh", "#!/bin/sh\n"), ("é ü", "4")):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
    (work / "a" / "b" / "c.sh").chmod(0o755)
    (work / "a" / "to-x").symlink_to("x")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "names", cwd=work)
    rev = git("rev-parse", "HEAD", cwd=work)
    tree = fetch_tree(Store(tmp_path / "c").ensure(), "names", f"file://{work}", rev)
    out = tmp_path / "out"
    extract_to(tree.path, out)
    assert tree_id(out) == git("rev-parse", "HEAD^{tree}", cwd=work)
    url, first, _ = bare
    fetched = fetch_tree(Store(tmp_path / "c").ensure(), "x", url, first)
    extract_to(fetched.path, tmp_path / "out2")
    assert tree_id(tmp_path / "out2") == git("rev-parse", f"{first}^{{tree}}", cwd=Path(url[7:]))


def mirror_of(tmp_path: Path, url: str, rev: str) -> Path:
    """A mirror directory holding `rev`'s tree archive and commit object, as `mirror export` writes them."""
    store = Store(tmp_path / "exporter").ensure()
    tree = fetch_tree(store, "x", url, rev)
    mirror = tmp_path / "mirror"
    mirror.mkdir(exist_ok=True)
    shutil.copyfile(tree.path, mirror / f"git-{rev}.tar")
    shutil.copyfile(commit_path(store, rev), mirror / f"git-{rev}.commit")
    return mirror


def test_a_mirror_directorys_tree_archive_is_used_offline_and_verified_by_commit(tmp_path, bare) -> None:
    url, first, _ = bare
    mirror = mirror_of(tmp_path, url, first)
    mirrors = Mirrors(files=(str(mirror),))
    nowhere = "https://127.0.0.1:9/repo.git"
    got = fetch_tree(Store(tmp_path / "c").ensure(), "x", nowhere, first, offline=True, mirrors=mirrors)
    assert got.origin == str(mirror)
    assert got.sha256 == fetch_tree(Store(tmp_path / "exporter"), "x", url, first).sha256
    assert commit_path(Store(tmp_path / "c"), first).read_bytes() == (mirror / f"git-{first}.commit").read_bytes()


def _rewrite_tar(path: Path, change) -> None:
    import io
    import tarfile

    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for member, data in change(members):
            tar.addfile(member, io.BytesIO(data) if data is not None else None)


def _edit_patch(members):
    for member, data in members:
        if member.name.endswith("fix.patch"):
            data = data.replace(b"+new", b"+evil")
            member.size = len(data)
        yield member, data


def _add_member(members):
    import tarfile

    yield from members
    extra = tarfile.TarInfo("extra.txt")
    extra.size = 5
    yield extra, b"extra"


def _climb_out(members):
    import tarfile

    yield from members
    evil = tarfile.TarInfo("../evil")
    evil.size = 1
    yield evil, b"x"


@pytest.mark.parametrize(
    ("change", "why"),
    [(_edit_patch, "holds the tree"), (_add_member, "holds the tree"), (_climb_out, "../evil")],
    ids=["edited", "added", "escape"],
)
def test_a_tampered_tree_archive_is_refused_and_git_is_asked(tmp_path, bare, change, why) -> None:
    url, first, _ = bare
    mirror = mirror_of(tmp_path, url, first)
    _rewrite_tar(mirror / f"git-{first}.tar", change)
    mirrors = Mirrors(files=(str(mirror),))
    with pytest.raises(FetchError) as exc:
        fetch_tree(
            Store(tmp_path / "c").ensure(), "x", "https://127.0.0.1:9/r.git", first, offline=True, mirrors=mirrors
        )
    [attempt] = exc.value.attempts
    assert attempt.startswith(f"{mirror}/git-{first}.tar: ") and why in attempt, attempt
    assert not (tmp_path / "evil").exists() and not (tmp_path / "c" / "evil").exists()
    got = fetch_tree(Store(tmp_path / "c"), "x", url, first, mirrors=mirrors)
    assert got.origin == url and read_member(got.path, "patches/fix.patch") == PATCH


def test_a_commit_object_of_another_commit_is_refused(tmp_path, bare) -> None:
    url, first, second = bare
    mirror = mirror_of(tmp_path, url, first)
    other = mirror_of(tmp_path / "o", url, second)
    shutil.copyfile(other / f"git-{second}.commit", mirror / f"git-{first}.commit")
    with pytest.raises(FetchError) as exc:
        fetch_tree(
            Store(tmp_path / "c").ensure(),
            "x",
            "https://127.0.0.1:9/r.git",
            first,
            offline=True,
            mirrors=Mirrors(files=(str(mirror),)),
        )
    assert exc.value.attempts == (f"{mirror}/git-{first}.tar: git-{first}.commit is not the commit object of {first}",)


def test_gc_drops_a_commit_object_with_its_tree(tmp_path, bare) -> None:
    from lwrecipe.store.gc import _drop_dangling_git_refs

    url, first, _ = bare
    store = Store(tmp_path / "c").ensure()
    tree = fetch_tree(store, "x", url, first)
    _drop_dangling_git_refs(store)
    assert commit_path(store, first).exists()
    tree.path.unlink()
    _drop_dangling_git_refs(store)
    assert not commit_path(store, first).exists() and not ref_path(store, first).exists()


def demo_recipe(url: str, rev: str) -> str:
    """A recipe with a git source and a patch read from inside it."""
    return f'''schema = 1
[package]
name = "demo"
version = "1"
license = "MIT"
[[sources]]
name = "tools"
git = "{url}"
rev = "{rev}"
unpack = false
[[patches]]
source = "tools"
path = "patches/fix.patch"
[build]
script = "true"
'''


def test_recipe_with_git_source_and_patch_inside_it(project, bare, tmp_path) -> None:
    url, first, _ = bare
    project.recipe("demo", demo_recipe(url, first))
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


@pytest.mark.slow
def test_the_real_linux_wasm_source_comes_from_a_git_mirror(tmp_path) -> None:
    """An air-gapped site serves the pinned linux-wasm commit from a local bare clone
    through LWRECIPE_GIT_MIRRORS, the real recipes unedited; every patch they name is
    read from that tree (git ran with a cleared environment: no mirror was possible)."""
    from lwrecipe.inputs.mirrors import GIT_MIRRORS_ENV, from_env
    from lwrecipe.recipes.graph import load_graph
    from lwrecipe.recipes.schema import GitSource as Git
    from lwrecipe.recipes.schema import SourcePatch
    from tests.conftest import REPO, upstream

    bare = upstream("linux-wasm.git")
    clone = tmp_path / "linux-wasm.git"  # a copy the running user owns (git refuses others' repositories)
    shutil.copytree(bare, clone, symlinks=True)
    graph = load_graph([str(REPO / "recipes" / "runtime.toml")])
    gits = {(s.git, s.rev) for r in graph.recipes.values() for s in r.doc.sources if isinstance(s, Git)}
    assert len(gits) == 1
    [(url, rev)] = gits
    mirrors = from_env({GIT_MIRRORS_ENV: f"{url}={clone}"})
    assert mirrors.git_locations(url) == [str(clone), url]
    store = Store(tmp_path / "cache").ensure()
    tree = fetch_tree(store, "linux-wasm", url, rev, mirrors=mirrors)
    assert tree.origin == str(clone)
    named = [(r.name, p.path) for r in graph.recipes.values() for p in r.doc.patches if isinstance(p, SourcePatch)]
    assert named and all(read_member(tree.path, path) for _, path in named), named


def test_lock_check_fails_while_a_fetched_git_sources_pins_are_empty(project, bare, cli) -> None:
    """A lock written before the tree was fetched has empty first-use pins; once
    the tree is in the cache, `lock --check` says the lock is out of date, and an
    empty cache (offline) keeps the pins the lock has."""
    url, first, _ = bare
    project.recipe("demo", demo_recipe(url, first))
    assert cli("--cache", "c", "lock", "--offline").code == 0
    assert 'tree_sha256 = ""' in (project.root / "lockfile.toml").read_text()
    assert cli("--cache", "c", "fetch", "demo").code == 0
    stale = cli("--cache", "c", "lock", "--check")
    assert stale.code == 3 and "out of date for demo" in stale.err
    assert cli("--cache", "c", "lock").code == 0
    text = (project.root / "lockfile.toml").read_text()
    assert 'tree_sha256 = ""' not in text and hashlib.sha256(PATCH).hexdigest() in text
    assert cli("--cache", "empty", "lock", "--check", "--offline").code == 0


def test_a_repositorys_own_files_never_configure_the_hosts_git(tmp_path) -> None:
    """git runs with its global config off: a `.gitconfig` (or `.config/git/config`)
    checked out of the repository must not configure the git lwrecipe runs, which
    trace2 would turn into a write of attacker text to any host file."""
    marker = tmp_path / "traced"
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    conf = f"[trace2]\n\tnormalTarget = {marker}\n"
    (work / ".gitconfig").write_text(conf)
    (work / ".config" / "git").mkdir(parents=True)
    (work / ".config" / "git" / "config").write_text(conf.replace("traced", "traced-xdg"))
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "one", cwd=work)
    rev = git("rev-parse", "HEAD", cwd=work)
    marker.unlink(missing_ok=True)  # the set-up's own git ran with HOME = the work tree
    fetch_tree(Store(tmp_path / "c"), "x: sources[0]", f"file://{work}", rev)
    assert not marker.exists() and not (tmp_path / "traced-xdg").exists()


@pytest.mark.parametrize(
    "url",
    [
        "http://%31%32%37.0.0.1:{port}/internal.git",
        "http://127.0.0.1%2e:{port}/x.git",
        "http://LOCALHOST.:{port}/x.git",
    ],
)
@pytest.mark.slow
def test_a_git_host_spelled_to_dodge_the_address_check_is_refused(tmp_path, monkeypatch, url: str) -> None:
    """A host that does not resolve here as written (percent-encoded) is refused, not
    left to git, which decodes it and connects to loopback."""
    from tests.servers import fault_server

    monkeypatch.delenv("LWRECIPE_ALLOW_PRIVATE", raising=False)
    with fault_server() as server:
        with pytest.raises(FetchError):
            fetch_tree(Store(tmp_path / "c"), "x: sources[0]", url.format(port=server.port), "a" * 40)
        assert server.connections == 0


@pytest.mark.slow
def test_pin_asks_no_private_address_for_a_ref(tmp_path, monkeypatch) -> None:
    from lwrecipe.inputs.pinning import resolve_ref
    from tests.servers import fault_server

    monkeypatch.delenv("LWRECIPE_ALLOW_PRIVATE", raising=False)
    with fault_server() as server:
        with pytest.raises(FetchError) as caught:
            resolve_ref(server.url("/secret-internal.git"), "main")
        assert server.connections == 0
    assert "127.0.0.1 is a loopback address" in caught.value.attempts[0]
