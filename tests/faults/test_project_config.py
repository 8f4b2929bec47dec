"""A project's lwrecipe.toml is untrusted: a stranger's pull request edits it as
easily as a recipe. What it says about git, credentials, keys and places outside
the project applies only when the user accepted it (`--accept-project-config`
or `[accept] projects` in the user's own config); otherwise one warning names
what was ignored and the command goes on without it. Mirror values, whoever
set them, never reach git as an option."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import Project, Result, run_subprocess

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

NOWHERE = "file:///nonexistent/lwrecipe-test/x.git"
REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def user(project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's own config file (empty to start with)."""
    path = tmp_path / "home" / "config.toml"
    path.parent.mkdir()
    path.write_text("")
    monkeypatch.setenv("LWRECIPE_CONFIG", str(path))
    for var in ("LWRECIPE_REMOTES", "LWRECIPE_SIGNING_KEY", "LWRECIPE_TRUSTED_KEYS", "LWRECIPE_MIRRORS",
                "LWRECIPE_GIT_MIRRORS", "LWRECIPE_DEBIAN_MIRRORS"):
        monkeypatch.delenv(var, raising=False)
    return path


def run(project: Project, *args: str, env: dict[str, str] | None = None) -> Result:
    return run_subprocess("--cache", str(project.root / "cache"), *args, cwd=project.root, env=env)


def git_recipe(project: Project) -> None:
    project.recipe("g", f'schema = 1\n[package]\nname = "g"\nversion = "1"\nlicense = "MIT"\n'
                        f'[[sources]]\ngit = "{NOWHERE}"\nrev = "{REV}"\n[build]\nscript = "true"\n')


@pytest.mark.parametrize("where", ["env", "user"])
def test_an_option_as_a_git_mirror_is_refused_even_from_the_user(project: Project, user: Path, tmp_path: Path,
                                                                 where: str) -> None:
    git_recipe(project)
    marker = tmp_path / "pwned"
    if where == "env":
        env = {"LWRECIPE_GIT_MIRRORS": f"{NOWHERE}=--upload-pack=:${{IFS}}&&touch${{IFS}}{marker}"}
        named = "LWRECIPE_GIT_MIRRORS"
    else:
        user.write_text(f'[mirrors.git]\n"{NOWHERE}" = ["--upload-pack=:;touch {marker}"]\n')
        env, named = {}, f"{user}: mirrors.git"
    result = run(project, "fetch", "g", env=env)
    assert not marker.exists()
    assert result.code == 2 and result.err.count("\n") == 1 and named in result.err, result.err


@pytest.mark.parametrize("value, fields", [
    ("-x/y", ("files", "git", "debian")), ("/srv/a\nb", ("files", "git", "debian")),
    ("/srv/\x1b[2Jx", ("files", "git", "debian")), ("gopher://h/x", ("files", "git", "debian")),
    ("ext::sh -c id", ("git", "debian")), ("/srv/debian", ("debian",))])
def test_mirror_values_are_urls_or_paths(project: Project, user: Path, value: str, fields: tuple[str, ...]) -> None:
    git_recipe(project)
    for field in fields:
        quoted = json.dumps(value)  # a TOML basic string: \n and \u001b escapes as JSON writes them
        user.write_text(f"[mirrors]\nfiles = [{quoted}]\n" if field == "files"
                        else f'[mirrors.{field}]\n"{NOWHERE}" = [{quoted}]\n')
        result = run(project, "fetch", "g")
        assert result.code == 2 and result.err.count("\n") == 1, (field, result.err)
        assert f"{user}: mirrors.{field}" in result.err and "\x1b" not in result.err, (field, result.err)
