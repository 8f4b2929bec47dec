"""Recipes a stranger could send: each tries to get a host file out, or to change
one, through what lwrecipe does before and after the sandbox. No byte of the
planted secret may appear in lwrecipe's output, the cache (blobs decompressed) or
a checkout, and victim files keep their bytes and modes."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from tests.conftest import REPO, Project, Result, missing, run_subprocess, script_recipe

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]


@pytest.fixture
def secret(tmp_path: Path) -> tuple[Path, bytes]:
    """A host file only root can read, such as a signing key named by LWRECIPE_SIGNING_KEY."""
    value = f"HOSTSECRET-{uuid.uuid4().hex}".encode()
    path = tmp_path / "host" / "signing.key"
    path.parent.mkdir()
    path.write_bytes(value + b"\n")
    path.chmod(0o600)
    return path, value


def hostile(project: Project, name: str, script: str, extra: str = "") -> None:
    project.recipe(name, script_recipe(name, script, 'host_tools = ["mkdir", "rm", "ln", "cat", "chmod"]', extra))


def build(project: Project, name: str) -> Result:
    return run_subprocess("--cache", str(project.root / "cache"), "build", name, cwd=project.root)


def assert_not_leaked(value: bytes, project: Project, *results: Result) -> None:
    for result in results:
        assert value.decode() not in result.out + result.err
    for path in (project.root / "cache").rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        assert value not in data, path
        if data[:4] == b"\x28\xb5\x2f\xfd":
            assert value not in zstandard.ZstdDecompressor().stream_reader(data).read(), path


def test_a_log_swapped_for_a_symlink_is_not_read(project: Project, secret) -> None:
    path, value = secret
    hostile(project, "logsteal", f'mkdir -p "$LW_OUT"; rm -f /build/build.log; ln -s {path} /build/build.log')
    result = build(project, "logsteal")
    assert_not_leaked(value, project, result)
    hostile(project, "logfail", f"rm -f /build/build.log; ln -s {path} /build/build.log; exit 1")
    failed = build(project, "logfail")
    assert failed.code == 1
    assert_not_leaked(value, project, failed)


def test_an_output_swapped_for_a_symlink_is_refused(project: Project, secret) -> None:
    path, value = secret
    hostile(project, "outsteal", f"rm -rf /build/out; ln -s {path.parent} /build/out")
    result = build(project, "outsteal")
    assert result.code == 1 and "Traceback" not in result.err
    assert "outsteal: the output /build/out is not a directory (a symlink); refused" in result.err
    assert not list((project.root / "cache" / "ac").iterdir())
    assert_not_leaked(value, project, result)


@pytest.mark.parametrize("dest", ["../.lwrecipe", "../build.log", "../.lwrecipe/bin"])
def test_a_source_cannot_be_laid_over_lwrecipes_own_files(project: Project, tmp_path: Path, dest: str) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    victim.chmod(0o640)
    planted = project.root / "plant"
    planted.mkdir()
    (planted / "script.sh").symlink_to(victim)
    (planted / "build.log").symlink_to(victim)
    hostile(project, "overlay", 'mkdir -p "$LW_OUT"', extra=f'[[sources]]\npath = "plant"\ndest = "{dest}"\n')
    result = build(project, "overlay")
    assert result.code == 2 and "Traceback" not in result.err
    assert f"sources[0].dest: {dest!r} is reserved by the build sandbox" in result.err
    assert victim.read_text() == "keep me\n" and stat.S_IMODE(victim.stat().st_mode) == 0o640


@pytest.mark.root
def test_the_sandbox_shows_no_etc_secrets(project: Project) -> None:
    """Run as root (README's set-up), a build on host tools read /etc/shadow."""
    hostile(
        project,
        "etcsteal",
        'mkdir -p "$LW_OUT"; cat /etc/shadow > "$LW_OUT/shadow" 2>/dev/null || true; '
        'cat /etc/gshadow > "$LW_OUT/gshadow" 2>/dev/null || true; '
        'cat /etc/ssh/ssh_host_ed25519_key > "$LW_OUT/ssh" 2>/dev/null || true',
    )
    result = build(project, "etcsteal")
    assert result.code == 0, result.err
    out = project.root / "out"
    assert (
        run_subprocess("--cache", str(project.root / "cache"), "checkout", "etcsteal", str(out), cwd=project.root).code
        == 0
    )
    for name in ("shadow", "gshadow", "ssh"):
        assert not (out / name).exists() or (out / name).read_bytes() == b"", name


def test_passwords_in_proxy_urls_are_never_printed(project: Project) -> None:
    project.recipe(
        "fetched",
        'schema = 1\n[package]\nname = "fetched"\nversion = "1"\nlicense = "MIT"\n'
        '[[sources]]\nurl = "https://example.invalid/x.tar.gz"\nsha256 = "' + "0" * 64 + '"\n'
        '[build]\nscript = "true"\n',
    )
    for proxy in ("socks5://alice:s3cretpw@127.0.0.1:1080", "http://alice:s3cretpw@127.0.0.1:99999"):
        result = run_subprocess(
            "--cache",
            str(project.root / "cache"),
            "fetch",
            "fetched",
            cwd=project.root,
            env={"https_proxy": proxy, "LWRECIPE_MIRRORS": ""},
        )
        assert result.code != 0 and "alice:***@" in result.err, result.err
        assert "s3cretpw" not in result.out + result.err


NOBODY = 65534


def _share(src: str, dst: str) -> None:
    """A file of the suite's venv or checkout, for every user: hard-linked where its
    mode lets others read it already (no copy of 400 MB), copied and opened up where
    not, or where the link would cross file systems."""
    if os.stat(src).st_mode & stat.S_IROTH:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)
    os.chmod(dst, os.stat(dst).st_mode | 0o044 | (0o011 if os.stat(dst).st_mode & 0o100 else 0))


@pytest.fixture(scope="session")
def nobody_python() -> Iterator[Path]:
    """The suite's own Python and lwrecipe where the user nobody can run them: the
    suite's venv and checkout may sit under /root, which nobody cannot enter. Its venv
    and lwrecipe's source, shared into a directory every user can read, not installed
    again: lwrecipe found through a .pth file in place of the editable install's."""
    if not shutil.which("setpriv"):
        missing("setpriv is missing (util-linux)")
    if sys.prefix == sys.base_prefix:
        missing(f"the suite runs on {sys.executable}, not in a venv: run scripts/test.sh")
    base = Path(tempfile.mkdtemp(prefix="lwrecipe-nobody-venv-"))  # pytest's own tmp is 0700 to others
    venv, src = base / "venv", base / "src"
    shutil.copytree(
        sys.prefix, venv, symlinks=True, copy_function=_share, ignore=shutil.ignore_patterns("__editable__*")
    )
    shutil.copytree(REPO / "lwrecipe", src / "lwrecipe", copy_function=_share)
    site = venv / Path(sysconfig.get_paths()["purelib"]).relative_to(sys.prefix)
    (site / "lwrecipe-checkout.pth").write_text(f"{src}\n")
    for dirpath, _, _ in os.walk(base):
        os.chmod(dirpath, 0o755)
    os.chmod(site / "lwrecipe-checkout.pth", 0o644)
    yield venv / "bin" / "python3"
    shutil.rmtree(base)


@pytest.fixture
def nobody_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="lwrecipe-nobody-"))
    home.chmod(0o755)
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.root
def test_clean_up_never_changes_a_file_through_a_symlink(nobody_home: Path, nobody_python: Path) -> None:
    """As an ordinary user, the clean-up of a build directory chmod-ed through a link
    the build left: a 0600 key of that user became 0755."""
    home = nobody_home
    victim = home / "key"
    victim.write_text("private\n")
    victim.chmod(0o600)
    project = Project(home / "project")
    hostile(
        project,
        "unlock",
        f'mkdir -p "$LW_OUT" /build/tmp/locked; ln -s {victim} /build/tmp/locked/link; chmod 0500 /build/tmp/locked',
    )
    for dirpath, dirnames, filenames in os.walk(home):
        for name in [*dirnames, *filenames, "."]:
            os.lchown(os.path.join(dirpath, name), NOBODY, NOBODY)
    result = subprocess.run(
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            str(nobody_python),
            "-I",
            "-m",
            "lwrecipe",
            "--cache",
            str(home / "cache"),
            "build",
            "unlock",
        ],
        cwd=project.root,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home)},
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert "unlock" in result.stderr and "built" in result.stderr, result.stderr  # it ran, as nobody
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600 and victim.read_text() == "private\n"
    assert not list((home / "cache" / "tmp").glob("build-*")), "the build directory was left behind"


def test_a_source_cannot_be_laid_out_through_a_link_an_earlier_source_made(project: Project, tmp_path: Path) -> None:
    """A source that is a link to a host directory (a git tree or a directory in a pull
    request may hold one), then a source laid at that name, wrote into the host."""
    victim = tmp_path / "victim-dir"
    victim.mkdir()
    (project.root / "first").mkdir()
    (project.root / "first" / "evil").symlink_to(victim)
    project.file("second/dropped.txt", "written through the link\n")
    hostile(
        project,
        "through",
        'mkdir -p "$LW_OUT"',
        extra='[[sources]]\npath = "first"\n[[sources]]\npath = "second"\ndest = "evil"\n',
    )
    result = build(project, "through")
    assert result.code == 3 and "Traceback" not in result.err, result.err
    assert "sources[1]: its destination evil goes through the symlink evil that sources[0] made" in result.err
    assert list(victim.iterdir()) == []


def victim_dir(tmp_path: Path) -> tuple[Path, dict[str, tuple[str, int, bytes]]]:
    """A host directory (and file) that a layout must not touch, with its snapshot."""
    from tests.hostile_trees import make_decoy, snapshot

    decoy = make_decoy(tmp_path / "host-decoy")
    return decoy, snapshot(decoy)


def unchanged(decoy: Path, before: dict[str, tuple[str, int, bytes]]) -> bool:
    from tests.hostile_trees import snapshot

    return snapshot(decoy) == before


@pytest.mark.parametrize(
    "first_dest, planted, dest, inside, link",
    [
        (".", "d/evil", "d", "evil/dropped.txt", "d/evil"),
        ("lib", "evil", ".", "lib/evil/dropped.txt", "lib/evil"),
        (".", "d/evil", "d/evil/sub", "dropped.txt", "d/evil"),
    ],
)
def test_a_merged_source_does_not_write_through_a_link_an_earlier_source_made(
    project: Project, tmp_path: Path, first_dest: str, planted: str, dest: str, inside: str, link: str
) -> None:
    """A directory of the repository holds an absolute link; a second path source whose
    tree overlaps it was merged through the link, as root, before any sandbox."""
    decoy, before = victim_dir(tmp_path)
    (project.root / "first" / planted).parent.mkdir(parents=True)
    (project.root / "first" / planted).symlink_to(decoy / "victim-dir")
    project.file(f"second/{inside}", "written through the link\n")
    hostile(
        project,
        "merged",
        'mkdir -p "$LW_OUT"',
        extra=f'[[sources]]\npath = "first"\ndest = "{first_dest}"\n[[sources]]\npath = "second"\ndest = "{dest}"\n',
    )
    result = build(project, "merged")
    assert result.code == 3 and "Traceback" not in result.err, result.err
    assert "merged.toml: sources[1]:" in result.err and f"the symlink {link} that sources[0] made" in result.err
    assert sum(line.startswith("error:") for line in result.err.splitlines()) == 1, result.err
    assert unchanged(decoy, before)


def test_a_file_source_replaces_a_link_an_earlier_source_left(project: Project, tmp_path: Path) -> None:
    """A single-file path source copied onto a link to a host file overwrote that file."""
    decoy, before = victim_dir(tmp_path)
    (project.root / "first" / "inc").mkdir(parents=True)
    (project.root / "first" / "inc" / "config.h").symlink_to(decoy / "victim.txt")
    project.file("second/config.h", "#define X 1\n")
    hostile(
        project,
        "onto",
        'mkdir -p "$LW_OUT"; cat inc/config.h > "$LW_OUT/seen"',
        extra='[[sources]]\npath = "first"\n[[sources]]\npath = "second/config.h"\ndest = "inc"\n',
    )
    result = build(project, "onto")
    assert result.code == 0 and "Traceback" not in result.err, result.err
    assert unchanged(decoy, before)
    out = project.root / "out"
    assert (
        run_subprocess("--cache", str(project.root / "cache"), "checkout", "onto", str(out), cwd=project.root).code == 0
    )
    assert (out / "seen").read_text() == "#define X 1\n"


def test_a_kept_download_replaces_a_link_an_earlier_source_left(project: Project, tmp_path: Path) -> None:
    """A source kept whole (unpack = false) was copied through a link a path source left
    at its name beside the tree."""
    import hashlib

    decoy, before = victim_dir(tmp_path)
    data = b"plain download\n"
    sha = hashlib.sha256(data).hexdigest()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / sha).write_bytes(data)
    (project.root / "first").mkdir()
    (project.root / "first" / "x.bin").symlink_to(decoy / "victim.txt")
    hostile(
        project,
        "kept",
        'mkdir -p "$LW_OUT"; cat ../tools/x.bin > "$LW_OUT/seen"',
        extra='[[sources]]\npath = "first"\ndest = "../tools"\n'
        f'[[sources]]\nurl = "https://example.invalid/x.bin"\nsha256 = "{sha}"\nname = "tools"\n'
        "unpack = false\n",
    )
    result = run_subprocess(
        "--cache", str(project.root / "cache"), "build", "kept", cwd=project.root, env={"LWRECIPE_MIRRORS": str(mirror)}
    )
    assert "Traceback" not in result.err, result.err
    assert unchanged(decoy, before)
    assert result.code == 0, result.err


def _git_repo(tmp_path: Path, build: object) -> tuple[str, str]:
    from tests.test_gitsrc import git

    work = tmp_path / "gitwork"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    build(work)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "one", cwd=work)
    bare = tmp_path / "repo.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp_path)
    return f"file://{bare}", git("rev-parse", "HEAD", cwd=work)


def test_a_source_over_a_git_trees_link_is_refused(project: Project, tmp_path: Path) -> None:
    """A git tree's links may only point inside the tree, but `strip` moves them up:
    `d1/…/d12/evil -> ../…/..` stays inside the unpacked tree, and with strip = 12 it
    became `g/evil -> ../…/..`, the host's /; a second source merged through it wrote
    anywhere, as root."""
    decoy, before = victim_dir(tmp_path)
    depth = 12

    def plant(work: Path) -> None:
        deep = work.joinpath(*(f"d{i}" for i in range(depth)))
        deep.mkdir(parents=True)
        (deep / "evil").symlink_to("/".join([".."] * depth))

    url, rev = _git_repo(tmp_path, plant)
    project.file(f"second/g/evil/{(decoy / 'victim-dir').relative_to('/')}/dropped.txt", "written through\n")
    hostile(
        project,
        "gitlink",
        'mkdir -p "$LW_OUT"',
        extra=f'[[sources]]\ngit = "{url}"\nrev = "{rev}"\nstrip = {depth}\ndest = "g"\n[[sources]]\npath = "second"\n',
    )
    result = build(project, "gitlink")
    assert result.code == 3 and "Traceback" not in result.err, result.err
    assert "gitlink.toml: sources[1]:" in result.err and "the symlink g/evil that sources[0] made" in result.err
    assert unchanged(decoy, before)


def test_a_patch_through_a_link_is_refused(project: Project, tmp_path: Path) -> None:
    """GNU patch (2.7.6 here) refuses links itself; lwrecipe checks first, whatever
    patch the host has, and names the link."""
    decoy, before = victim_dir(tmp_path)
    (project.root / "first").mkdir()
    (project.root / "first" / "evil").symlink_to(decoy / "victim-dir")
    project.file(
        "x.patch",
        "--- a/evil/a\n+++ b/evil/a\n@@ -1 +1 @@\n-victim a\n+patched\n"
        "--- /dev/null\n+++ b/evil/new\n@@ -0,0 +1 @@\n+created\n",
    )
    hostile(
        project, "patchlink", 'mkdir -p "$LW_OUT"', extra='[[sources]]\npath = "first"\n[[patches]]\nfile = "x.patch"\n'
    )
    result = build(project, "patchlink")
    assert result.code == 3 and "Traceback" not in result.err, result.err
    assert "patchlink: patches[0]" in result.err and "goes through the symlink evil" in result.err, result.err
    assert unchanged(decoy, before)


def test_checkout_never_writes_into_an_existing_directory(project: Project, tmp_path: Path) -> None:
    """DEST is the user's, but whatever is already inside it is not followed: a DEST
    that exists is refused, links in it or not."""
    decoy, before = victim_dir(tmp_path)
    hostile(project, "plain", 'mkdir -p "$LW_OUT/victim-dir"; echo out > "$LW_OUT/victim-dir/a"')
    assert build(project, "plain").code == 0
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "victim-dir").symlink_to(decoy / "victim-dir")
    result = run_subprocess("--cache", str(project.root / "cache"), "checkout", "plain", str(dest), cwd=project.root)
    assert result.code == 2 and "already exists" in result.err, result.err
    assert unchanged(decoy, before)
