"""The command line: help, version, show, graph."""

from __future__ import annotations

import pytest

from lwrecipe import __version__
from lwrecipe.cli import build_parser
from tests.conftest import run_subprocess, simple_recipe


def _commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)


def test_version(cli, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli("--version")
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"lwrecipe {__version__}"


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help(command, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--help"])
    assert exc.value.code == 0
    assert "usage: lwrecipe " + command in capsys.readouterr().out


def test_unknown_command_is_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["frobnicate"])
    assert exc.value.code == 2


@pytest.fixture
def chain(project):
    project.recipe("base", simple_recipe("base"))
    project.recipe("lib", simple_recipe("lib", ["base"]))
    project.recipe("app", simple_recipe("app", ["lib", "base"], extra='description = "the app"'))
    return project


def test_graph_dot(chain, cli) -> None:
    result = cli("graph", "app", "--dot")
    assert result.code == 0
    assert result.out.startswith("digraph lwrecipe {")
    assert '"app" -> "lib";' in result.out and '"lib" -> "base";' in result.out and '"app" -> "base";' in result.out


def test_graph_tree(chain, cli) -> None:
    assert cli("graph", "app").out.splitlines() == ["app 1.0", "  base 1.0", "  lib 1.0", "    base 1.0"]


def test_show_text_and_json(chain, cli) -> None:
    text = cli("show", "base")
    assert text.code == 0 and "base 1.0  (MIT)" in text.out and "key:" in text.out
    import json

    doc = json.loads(cli("show", "app", "--json").out)
    assert doc["name"] == "app" and doc["depends"] == ["lib", "base"] and doc["key"] is None
    assert doc["waiting_on"] == ["lib", "base"] and doc["description"] == "the app"


def test_plan_table(chain, cli) -> None:
    result = cli("plan", "app")
    lines = result.out.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "KEY", "ON", "STATUS"]
    assert [line.split()[0] for line in lines[1:]] == ["base", "lib", "app"]
    assert "not built" in lines[1] and "after base" in lines[2]


def test_cache_option_and_env(chain, cli, monkeypatch, tmp_path) -> None:
    from lwrecipe.cli.common import Context

    monkeypatch.setenv("LWRECIPE_CACHE", str(tmp_path / "c1"))
    assert Context(build_parser().parse_args(["plan", "x"])).cache_dir == tmp_path / "c1"
    ctx = Context(build_parser().parse_args(["--cache", str(tmp_path / "c2"), "plan", "x"]))
    assert ctx.cache_dir == tmp_path / "c2"


@pytest.mark.slow
def test_the_default_cache_is_the_projects_wherever_the_command_runs(project, tmp_path, monkeypatch) -> None:
    """`cd recipes && lwrecipe build busybox` silently started a new, empty cache there."""
    project.recipe(
        "one",
        'schema = 1\n[package]\nname = "one"\nversion = "1"\nlicense = "MIT"\n'
        '[build]\nhost_tools = ["mkdir"]\nscript = "mkdir -p $LW_OUT"\n',
    )
    monkeypatch.delenv("LWRECIPE_CACHE", raising=False)
    inside = run_subprocess("build", "../recipes/one.toml", cwd=project.root / "recipes")
    assert inside.code == 0, inside.err
    assert not (project.root / "recipes" / "cache").exists() and (project.root / "cache" / "ac").is_dir()
    again = run_subprocess("plan", "one", "--json", cwd=project.root)
    assert '"status": "cached"' in again.out
    outside = tmp_path.parent / f"{tmp_path.name}-nowhere"
    outside.mkdir()
    home = run_subprocess("cache", "stats", cwd=outside, env={"XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert home.code == 0 and f"using the user cache {tmp_path / 'xdg' / 'lwrecipe' / 'store'}" in home.err
    assert not (outside / "cache").exists()


def _complete(words: list[str], cwd) -> list[str]:
    import subprocess

    script = run_subprocess("completion", "bash", cwd=cwd).out
    words_text = " ".join(f"'{w}'" for w in words)
    probe = f'{script}\nCOMP_WORDS=({words_text}); COMP_CWORD={len(words) - 1}; _lwrecipe; printf "%s\\n" "${{COMPREPLY[@]}}"'
    out = subprocess.run(["bash", "-c", probe], cwd=cwd, capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line]


def test_bash_completion_knows_every_command_option_and_recipe() -> None:
    """Generated from the parser: commands, subcommands, each command's options,
    and recipe names of the project around the current directory."""
    from tests.conftest import REPO

    top = _complete(["lwrecipe", ""], REPO)
    assert {"plan", "build", "cache", "shell", "log", "mirror", "completion"} <= set(top)
    assert set(_complete(["lwrecipe", "cache", ""], REPO)) == {"verify", "push", "pull", "gc", "stats"}
    assert set(_complete(["lwrecipe", "build", "--kee"], REPO)) == {"--keep-going", "--keep-failed"}
    assert "--repair" in _complete(["lwrecipe", "cache", "verify", "--"], REPO)
    assert "busybox" in _complete(["lwrecipe", "--cache", "x", "build", "bus"], REPO)
    assert _complete(["lwrecipe", "--cache", "x", "pl"], REPO) == ["plan"]
    zsh = run_subprocess("completion", "zsh", cwd=REPO).out
    assert zsh.startswith("#compdef lwrecipe") and "bashcompinit" in zsh and "complete -o filenames" in zsh


@pytest.mark.parametrize("url", ["s3://bucket/cache", "ftp://mirror.example/cache", "ssh://host/cache"])
def test_a_remote_in_a_scheme_lwrecipe_does_not_speak_is_refused(project, cli, url) -> None:
    """Not a directory named `s3:` made in the current directory (issue #23: it was
    so for grpc://, which is now a REAPI remote)."""
    project.recipe("a", simple_recipe("a"))
    for args in (["cache", "push", url], ["cache", "pull", url, "a"], ["plan", "a", "--remote", url]):
        result = cli(*args)
        assert result.code == 2 and result.err.count("\n") == 1, result.err
        assert f"{url.split('://')[0]}://" in result.err and "does not speak" in result.err, result.err
    assert sorted(p.name for p in project.root.iterdir()) == ["lwrecipe.toml", "recipes"]


@pytest.mark.parametrize("name", ["foo.bar", "foo_bar", "c++"])
def test_new_refuses_a_name_no_recipe_could_have(project, cli, name) -> None:
    """`new` once took . _ + in a name, downloaded the archive, then failed on the
    recipe it wrote: a recipe's package.name takes letters, digits and - only."""
    result = cli("new", name, "--url", f"http://127.0.0.1:9/{name}-1.0.tar.gz")
    assert result.code == 2 and f"new: {name!r} is not a recipe name" in result.err, result.err
    assert not (project.root / "recipes" / f"{name}.toml").exists()
