"""Mirror settings (environment and config files), `mirror export`, and air-gapped
fetches of the real musl recipe's inputs from an exported directory."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from lwrecipe.inputs.mirrors import DEBIAN_MIRRORS_ENV, GIT_MIRRORS_ENV, MIRRORS_ENV, Mirrors, from_env
from lwrecipe.remote.config import load_mirrors
from tests.conftest import REPO, run_subprocess, upstream

LINUX_WASM = "https://github.com/joelseverin/linux-wasm.git"
MUSL = REPO / "recipes" / "musl.toml"


def test_rules_give_mirrors_then_the_url() -> None:
    mirrors = from_env(
        {GIT_MIRRORS_ENV: f"https://github.com/=https://git.internal/gh/;{LINUX_WASM}=/srv/git/linux-wasm.git"}
    )
    assert mirrors.git_locations(LINUX_WASM) == [
        "https://git.internal/gh/joelseverin/linux-wasm.git",
        "/srv/git/linux-wasm.git",
        LINUX_WASM,
    ]
    assert mirrors.git_locations("https://gitlab.com/x/y.git") == ["https://gitlab.com/x/y.git"]


def test_settings_come_from_the_environment_then_the_project_then_the_user(tmp_path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "lwrecipe.toml").write_text(f'''[mirrors]
files = ["mirror", "https://team.example/sources/"]
git = {{ "{LINUX_WASM}" = ["git/linux-wasm.git", "https://git.team.example/linux-wasm.git"] }}
''')
    user = tmp_path / "home" / "config.toml"
    user.parent.mkdir()
    user.write_text("""[mirrors]
files = ["~/sources", "/srv/sources"]
[mirrors.debian]
"http://deb.debian.org/debian/" = ["https://snapshot.debian.org/archive/debian/20251115T000000Z/"]
""")
    env = {
        "LWRECIPE_CONFIG": str(user),
        MIRRORS_ENV: "/env/sources",
        GIT_MIRRORS_ENV: f"{LINUX_WASM}=/env/lw.git",
        DEBIAN_MIRRORS_ENV: "",
        "HOME": str(tmp_path / "home"),
    }
    said: list[str] = []
    got = load_mirrors(project, env, accept=True, warn=said.append)
    assert not said
    assert got.files == (
        "/env/sources",
        str(project / "mirror"),
        "https://team.example/sources",
        str(Path("~/sources").expanduser()),
        "/srv/sources",
    )
    assert got.git_locations(LINUX_WASM) == [
        "/env/lw.git",
        str(project / "git" / "linux-wasm.git"),
        "https://git.team.example/linux-wasm.git",
        LINUX_WASM,
    ]
    assert got.debian_urls("http://deb.debian.org/debian/pool/main/m/make/make.deb") == [
        "https://snapshot.debian.org/archive/debian/20251115T000000Z/pool/main/m/make/make.deb"
    ]
    assert load_mirrors(tmp_path, {"LWRECIPE_CONFIG": str(tmp_path / "none.toml")}) == Mirrors()
    unaccepted = load_mirrors(project, env, warn=said.append)  # the project's git mirrors are handed to git
    assert unaccepted.git_locations(LINUX_WASM) == ["/env/lw.git", LINUX_WASM]
    assert unaccepted.files == got.files and said == [
        f"{project / 'lwrecipe.toml'}: mirrors.git: ignored (a project's config cannot set these; accept with "
        f"--accept-project-config or [accept] projects in {user})"
    ]


def test_a_bad_mirrors_table_is_one_line_naming_file_and_field(tmp_path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[mirrors]\ngit = { "https://x/" = "/srv/x.git" }\n')
    result = run_subprocess(
        "--cache", str(tmp_path / "c"), "fetch", str(MUSL), cwd=tmp_path, env={"LWRECIPE_CONFIG": str(config)}
    )
    assert result.code == 2, result.err
    assert result.err.count("\n") == 1 and str(config) in result.err and "mirrors.git" in result.err, result.err
    assert "Traceback" not in result.err


def musl_mirrors(tmp_path: Path) -> Path:
    """A user config that serves the real musl recipe's inputs from ../shared/upstream:
    the release tarball from its directory, linux-wasm from a local clone by git URL."""
    sources = upstream("sources/musl-1.2.5.tar.gz").parent
    clone = tmp_path / "linux-wasm.git"  # a copy the running user owns (git refuses others' repositories)
    shutil.copytree(upstream("linux-wasm.git"), clone, symlinks=True)
    config = tmp_path / "config.toml"
    config.write_text(f'[mirrors]\nfiles = ["{sources}"]\ngit = {{ "{LINUX_WASM}" = ["{clone}"] }}\n')
    return config


@pytest.mark.root  # airgapped: a network namespace of its own
@pytest.mark.slow
def test_mirror_export_then_an_air_gapped_fetch_of_the_real_musl_inputs(tmp_path) -> None:
    """`mirror export` writes musl's tarball (by sha256 and name) and the pinned
    linux-wasm tree (by commit) from the config file's mirrors; a new store with no
    network and only that directory gets the same inputs, the patch included."""
    config = musl_mirrors(tmp_path)
    out = tmp_path / "export"
    result = run_subprocess(
        "--cache",
        str(tmp_path / "c1"),
        "mirror",
        "export",
        str(out),
        str(MUSL),
        "--no-deps",
        cwd=REPO,
        env={"LWRECIPE_CONFIG": str(config)},
    )
    assert result.code == 0, result.err
    recipe = tomllib.loads(MUSL.read_text())
    tarball = next(s for s in recipe["sources"] if "url" in s)
    rev = next(s for s in recipe["sources"] if "git" in s)["rev"]
    assert (out / tarball["sha256"]).samefile(out / "musl-1.2.5.tar.gz")
    assert {f"git-{rev}.tar", f"git-{rev}.commit", "SHA256SUMS"} <= {p.name for p in out.iterdir()}
    sums = dict(reversed(line.split("  ")) for line in (out / "SHA256SUMS").read_text().splitlines())
    assert sums["musl-1.2.5.tar.gz"] == tarball["sha256"]
    again = run_subprocess(
        "--cache",
        str(tmp_path / "c1"),
        "mirror",
        "export",
        str(out),
        str(MUSL),
        "--no-deps",
        cwd=REPO,
        env={"LWRECIPE_CONFIG": str(config)},
    )
    assert again.code == 0 and "0 written, 2 already there" in again.err, again.err

    air = {"LWRECIPE_CONFIG": str(tmp_path / "none.toml"), "LWRECIPE_MIRRORS": str(out)}
    fetched = run_subprocess(
        "--cache", str(tmp_path / "c2"), "fetch", "--offline", "--no-deps", str(MUSL), cwd=REPO, env=air, airgapped=True
    )
    assert fetched.code == 0, fetched.err
    first = run_subprocess(
        "--cache", str(tmp_path / "c1"), "fetch", "--no-deps", str(MUSL), cwd=REPO, env={"LWRECIPE_CONFIG": str(config)}
    )
    assert fetched.out.replace(str(out), "M").split("\n")[3:] == first.out.split("\n")[3:]  # the patch sha256
    rows = [line.split() for line in fetched.out.splitlines()[1:3]]
    assert [row[-1] for row in rows] == [f"file://{out}/{tarball['sha256']}", str(out)], fetched.out
    assert (tmp_path / "c2" / "refs" / f"git-{rev}").read_text() == (
        tmp_path / "c1" / "refs" / f"git-{rev}"
    ).read_text()


@pytest.mark.root  # airgapped: a network namespace of its own
@pytest.mark.slow
def test_offline_without_the_inputs_lists_each_missing_one(tmp_path) -> None:
    air = {"LWRECIPE_CONFIG": str(tmp_path / "none.toml"), "LWRECIPE_MIRRORS": str(tmp_path / "empty")}
    result = run_subprocess(
        "--cache", str(tmp_path / "c"), "fetch", "--offline", "--no-deps", str(MUSL), cwd=REPO, env=air, airgapped=True
    )
    assert result.code == 1
    assert "musl-1.2.5.tar.gz" in result.err and "git https://github.com/joelseverin/linux-wasm.git" in result.err


@pytest.mark.slow
def test_export_never_replaces_a_file_of_another_name_owner(tmp_path) -> None:
    """A file already in the mirror under a download's name, with other bytes, is
    kept; the download goes in by sha256 only, and the row says so."""
    config = musl_mirrors(tmp_path)
    out = tmp_path / "export"
    out.mkdir()
    (out / "musl-1.2.5.tar.gz").write_bytes(b"someone else's file")
    result = run_subprocess(
        "--cache",
        str(tmp_path / "c1"),
        "mirror",
        "export",
        str(out),
        str(MUSL),
        "--no-deps",
        cwd=REPO,
        env={"LWRECIPE_CONFIG": str(config)},
    )
    assert result.code == 0, result.err
    assert (out / "musl-1.2.5.tar.gz").read_bytes() == b"someone else's file"
    assert "the name musl-1.2.5.tar.gz is another file's here; by sha256 only" in result.out
