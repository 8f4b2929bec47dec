from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from lwrecipe.build.sandbox import bwrap_path
from lwrecipe.cli import main
from tests.browser import chromium

REPO = Path(__file__).resolve().parent.parent


def missing(what: str) -> NoReturn:
    """Something the test needs is not on this machine. CI always has everything the
    tests need, so there the test fails; elsewhere it is skipped."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (CI must have it)")
    pytest.skip(what)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """The markers that name a need of this machine (root, sandbox, browser; all
    markers are in pyproject.toml) are checked here, once for every test."""
    if item.get_closest_marker("root") and os.geteuid() != 0:
        missing("needs to run as root")
    if item.get_closest_marker("sandbox") and bwrap_path() is None:
        missing("bubblewrap (bwrap) is missing or cannot create a sandbox here")
    if item.get_closest_marker("browser") and chromium() is None:
        missing("chromium is not installed (scripts/setup.sh installs it)")


@dataclass
class Result:
    code: int
    out: str
    err: str


class Project:
    """A throwaway lwrecipe project: lwrecipe.toml at the top, recipes/ below it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "recipes").mkdir(parents=True, exist_ok=True)
        (root / "lwrecipe.toml").write_text("")

    def recipe(self, name: str, text: str) -> Path:
        path = self.root / "recipes" / f"{name}.toml"
        path.write_text(textwrap.dedent(text))
        return path

    def file(self, rel: str, text: str | bytes) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path


def script_recipe(name: str, script: str, build: str = "", extra: str = "") -> str:
    """A recipe that downloads nothing: `extra` goes after [package] (sources), `build`
    into [build] before the script."""
    return (
        f'schema = 1\n[package]\nname = "{name}"\nversion = "1"\nlicense = "MIT"\n{extra}\n'
        f"[build]\n{build}\nscript = '''\n{script}\n'''\n"
    )


def simple_recipe(name: str, depends: list[str] | None = None, script: str = "true", extra: str = "") -> str:
    deps = ", ".join(f'"{d}"' for d in depends or [])
    return (
        f'schema = 1\n[package]\nname = "{name}"\nversion = "1.0"\nlicense = "MIT"\n{extra}\n'
        f'[build]\ndepends = [{deps}]\nscript = "{script}"\n'
    )


@pytest.fixture(autouse=True)
def allow_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests serve recipe downloads from 127.0.0.1, which a recipe's URL may reach
    only when allowed: allowed here, for every test and the lwrecipe it starts (the
    tests of the refusal itself, tests/faults/test_network.py, take it away)."""
    monkeypatch.setenv("LWRECIPE_ALLOW_PRIVATE", "127.0.0.1")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LWRECIPE_CACHE", raising=False)
    return Project(tmp_path)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run the CLI in this process; returns exit code and captured output."""

    def run(*args: str) -> Result:
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def run_subprocess(*args: str, cwd: Path, env: dict[str, str] | None = None, airgapped: bool = False) -> Result:
    """lwrecipe in a child process; `airgapped` runs it in a network namespace of its
    own (no interface but a down loopback: any connection fails)."""
    command = [sys.executable, "-I", "-m", "lwrecipe", *args]
    if airgapped:
        command = [*no_network(), *command]
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    return Result(proc.returncode, proc.stdout, proc.stderr)


def no_network() -> list[str]:
    """The command prefix that takes the network away (`unshare --net`, as root); CI
    has it, so there its absence fails the test."""
    if shutil.which("unshare") and subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode == 0:
        return ["unshare", "--net"]
    missing("`unshare --net` does not work here")


APT_ARCHIVES = Path("/var/cache/apt/archives")


@pytest.fixture(scope="session")
def deb_mirror(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every package of recipes/buildenv.toml and of the LLVM stand-in
    (standins/llvm.toml), fetched once per run (from apt's own cache where it has
    them, else Debian's archive): a mirror directory, by sha256, for the stores the
    tests make."""
    cache = tmp_path_factory.mktemp("debs")
    env = {"LWRECIPE_MIRRORS": str(APT_ARCHIVES)} if APT_ARCHIVES.is_dir() else {}
    result = run_subprocess(
        "--cache", str(cache), "-q", "fetch", "--no-deps", "buildenv", "standins/llvm.toml", cwd=REPO, env=env
    )
    assert result.code == 0, result.err
    return {"LWRECIPE_MIRRORS": str(cache / "sources")}


UPSTREAM = REPO.parent / "shared" / "upstream"


def upstream(rel: str) -> Path:
    """A real upstream input from ../shared/upstream (its README lists them): CI always
    has them, so there a missing one fails the test; elsewhere the test is skipped."""
    path = UPSTREAM / rel
    if not path.exists():
        missing(f"{path}: not on this machine (../shared/upstream)")
    return path
