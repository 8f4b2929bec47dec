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
from tests.integration.test_remote import Machine, recipe
from tests.servers import fault_server

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")]

NOWHERE = "file:///nonexistent/lwrecipe-test/x.git"
REV = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "tok-5e3c7a1b9d"


@pytest.fixture
def user(project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's own config file (empty to start with)."""
    path = tmp_path / "home" / "config.toml"
    path.parent.mkdir()
    path.write_text("")
    monkeypatch.setenv("LWRECIPE_CONFIG", str(path))
    for var in (
        "LWRECIPE_REMOTES",
        "LWRECIPE_SIGNING_KEY",
        "LWRECIPE_TRUSTED_KEYS",
        "LWRECIPE_MIRRORS",
        "LWRECIPE_GIT_MIRRORS",
        "LWRECIPE_DEBIAN_MIRRORS",
    ):
        monkeypatch.delenv(var, raising=False)
    return path


def run(project: Project, *args: str, env: dict[str, str] | None = None) -> Result:
    return run_subprocess("--cache", str(project.root / "cache"), *args, cwd=project.root, env=env)


def git_recipe(project: Project) -> None:
    project.recipe(
        "g",
        f'schema = 1\n[package]\nname = "g"\nversion = "1"\nlicense = "MIT"\n'
        f'[[sources]]\ngit = "{NOWHERE}"\nrev = "{REV}"\n[build]\nscript = "true"\n',
    )


def option_mirrors(marker: Path) -> list[str]:
    """Git mirror values that git would take as an option or a command to run."""
    return [
        f"--upload-pack=:;touch {marker}",  # ':' before the first '/': not taken as a local path
        f"--upload-pack=:;touch {marker}-2 #/x",
        f"ext::sh -c touch% {marker}",
        f"ssh://-oProxyCommand=touch%20{marker}/x.git",
    ]


def test_a_project_git_mirror_never_runs_a_command(project: Project, user: Path, tmp_path: Path) -> None:
    git_recipe(project)
    marker = tmp_path / "pwned"
    places = ", ".join(f"'{m}'" for m in option_mirrors(marker))
    project.file("lwrecipe.toml", f'[mirrors.git]\n"{NOWHERE}" = [{places}]\n')
    result = run(project, "fetch", "g")
    assert not list(tmp_path.glob("pwned*")), result.err
    assert "warning: " in result.err and "mirrors.git" in result.err and "ignored" in result.err, result.err
    assert result.err.count("mirrors.git") == 1, result.err
    accepted = run(project, "--accept-project-config", "fetch", "g")
    assert not list(tmp_path.glob("pwned*")), accepted.err
    assert accepted.code == 2 and accepted.err.startswith("error: ") and accepted.err.count("\n") == 1, accepted.err
    assert "lwrecipe.toml: mirrors.git" in accepted.err and "Traceback" not in accepted.err


@pytest.mark.parametrize("where", ["env", "user"])
def test_an_option_as_a_git_mirror_is_refused_even_from_the_user(
    project: Project, user: Path, tmp_path: Path, where: str
) -> None:
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


@pytest.mark.parametrize(
    "value, fields",
    [
        ("-x/y", ("files", "git", "debian")),
        ("/srv/a\nb", ("files", "git", "debian")),
        ("/srv/\x1b[2Jx", ("files", "git", "debian")),
        ("gopher://h/x", ("files", "git", "debian")),
        ("ext::sh -c id", ("git", "debian")),
        ("/srv/debian", ("debian",)),
    ],
)
def test_mirror_values_are_urls_or_paths(project: Project, user: Path, value: str, fields: tuple[str, ...]) -> None:
    git_recipe(project)
    for field in fields:
        quoted = json.dumps(value)  # a TOML basic string: \n and \u001b escapes as JSON writes them
        user.write_text(
            f"[mirrors]\nfiles = [{quoted}]\n" if field == "files" else f'[mirrors.{field}]\n"{NOWHERE}" = [{quoted}]\n'
        )
        result = run(project, "fetch", "g")
        assert result.code == 2 and result.err.count("\n") == 1, (field, result.err)
        assert f"{user}: mirrors.{field}" in result.err and "\x1b" not in result.err, (field, result.err)


def remote_recipe(project: Project) -> None:
    project.file("src/base.txt", "base\n")
    project.file("src/app.txt", "app\n")
    project.recipe("base", recipe("base", [], 'mkdir -p "$LW_OUT/lib"\ncp base.txt "$LW_OUT/lib/"'))


def test_a_project_remote_never_receives_the_users_secret(project: Project, user: Path) -> None:
    remote_recipe(project)
    env = {"SECRET_TOKEN": TOKEN}
    with fault_server() as server:
        project.file(
            "lwrecipe.toml",
            f'[[remote]]\nname = "team"\nurl = "{server.url("")}"\n'
            'auth_env = "SECRET_TOKEN"\nauth_header = "X-Token"\n',
        )
        plain = run(project, "plan", "base", env=env)
        assert plain.code == 0, plain.err
        assert server.seen_headers, "the plan never asked the project's remote"
        assert not any(TOKEN in str(h) for h in server.seen_headers)
        assert "lwrecipe.toml: remote[0].auth_env, remote[0].auth_header: ignored" in plain.err, plain.err
        assert TOKEN not in plain.err
        server.seen_headers.clear()
        accepted = run(project, "--accept-project-config", "plan", "base", env=env)
        assert accepted.code == 0, accepted.err
        assert server.seen_headers and all(h.get("X-Token") == TOKEN for h in server.seen_headers)
        assert "ignored" not in accepted.err
        server.seen_headers.clear()
        user.write_text(f'[accept]\nprojects = ["{project.root}"]\n')
        listed = run(project, "plan", "base", env=env)
        assert listed.code == 0 and "ignored" not in listed.err, listed.err
        assert server.seen_headers and all(h.get("X-Token") == TOKEN for h in server.seen_headers)


def test_a_project_remote_reaches_only_what_a_recipe_url_may(
    project: Project, user: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A project's remote is a URL the project chose: without acceptance it may not
    make this machine ask a loopback or private service (a recipe's URL may not)."""
    monkeypatch.delenv("LWRECIPE_ALLOW_PRIVATE", raising=False)
    remote_recipe(project)
    with fault_server() as server:
        project.file("lwrecipe.toml", f'[[remote]]\nname = "team"\nurl = "{server.url("")}"\n')
        plain = run(project, "plan", "base")
        assert plain.code == 0, plain.err
        assert server.connections == 0
        assert "127.0.0.1 is a loopback address" in plain.err, plain.err
        accepted = run(project, "--accept-project-config", "plan", "base")
        assert accepted.code == 0, accepted.err
        assert server.connections > 0


def test_a_project_grpc_remote_is_used_only_when_the_user_names_it(project: Project, user: Path) -> None:
    remote_recipe(project)
    project.file("lwrecipe.toml", '[[remote]]\nname = "farm"\nurl = "grpc://127.0.0.1:1/main"\n')
    result = run(project, "plan", "base")
    assert result.code == 0, result.err
    assert "lwrecipe.toml: remote[0]: ignored" in result.err, result.err
    named = run(project, "plan", "base", "--remote", "farm")
    assert "not the name of a configured remote" not in named.err and "127.0.0.1:1" in named.err, named.err


def test_a_project_cannot_accept_itself(project: Project, user: Path) -> None:
    remote_recipe(project)
    with fault_server() as server:
        project.file(
            "lwrecipe.toml",
            f'[accept]\nprojects = ["{project.root}"]\n'
            f'[[remote]]\nurl = "{server.url("")}"\nauth_env = "SECRET_TOKEN"\n',
        )
        result = run(project, "plan", "base", env={"SECRET_TOKEN": TOKEN})
        assert result.code == 0, result.err
        assert not any(TOKEN in str(h) for h in server.seen_headers)
        assert "lwrecipe.toml: remote[0].auth_env, accept: ignored" in result.err, result.err


@pytest.mark.sandbox
def test_a_project_cannot_push_to_a_directory_outside_it(
    project: Project, user: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    remote_recipe(project)
    outside = tmp_path_factory.mktemp("elsewhere") / "remote"  # the project is tmp_path: this is beside it
    project.file(
        "lwrecipe.toml", f'[[remote]]\nurl = "{outside}"\npush = true\n[[remote]]\nurl = "inside"\npush = true\n'
    )
    result = run(project, "build", "base")
    assert result.code == 0, result.err
    assert not outside.exists() and not (project.root / "inside" / "ac").exists(), result.err
    assert "lwrecipe.toml: remote[0], remote[1].push: ignored" in result.err, result.err
    assert result.err.count("ignored (a project's config") == 1, result.err
    pushed = run(project, "build", "base", "--push", "--rebuild")  # "every remote": the user's, not the project's
    assert pushed.code == 0, pushed.err
    assert not outside.exists() and not (project.root / "inside" / "ac").exists(), pushed.err
    named = run(project, "build", "base", "--push", "--rebuild", "--remote", "./inside")  # the user's own choice
    assert named.code == 0 and (project.root / "inside" / "ac").is_dir(), named.err


@pytest.fixture
def mallory(project: Project, user: Path) -> Machine:
    """Someone who ships prebuilt outputs inside the project, signed with their key."""
    remote_recipe(project)
    machine = Machine(project, "mallory")
    built = machine.run("build", "base", "--push", "--remote", str(project.root / "prebuilt"))
    assert built.code == 0, built.err
    return machine


@pytest.mark.sandbox
@pytest.mark.parametrize("how", ["trusted_keys", "remote.trusted_keys", "signing_key"])
def test_a_project_cannot_make_its_own_records_trusted(project: Project, mallory: Machine, how: str) -> None:
    carol = Machine(project, "carol")
    text = {
        "trusted_keys": f'trusted_keys = ["{mallory.public}"]\n[[remote]]\nurl = "prebuilt"\n',
        "remote.trusted_keys": f'[[remote]]\nurl = "prebuilt"\ntrusted_keys = ["{mallory.public}"]\n',
        "signing_key": f'signing_key = "{mallory.key.name}"\n[[remote]]\nurl = "prebuilt"\n',
    }[how]
    project.file("lwrecipe.toml", text)
    result = carol.run("build", "base", env={"LWRECIPE_SIGNING_KEY": ""} if how == "signing_key" else None)
    assert result.code == 0, result.err
    assert "1 built" in result.err and "1 pulled" not in result.err, result.err
    field = {
        "trusted_keys": "trusted_keys",
        "remote.trusted_keys": "remote[0].trusted_keys",
        "signing_key": "signing_key",
    }[how]
    assert f"lwrecipe.toml: {field}: ignored" in result.err, result.err
    accepted = Machine(project, "dave")
    opted = accepted.run(
        "--accept-project-config", "build", "base", env={"LWRECIPE_SIGNING_KEY": ""} if how == "signing_key" else None
    )
    assert opted.code == 0 and "0 built" in opted.err, opted.err


@pytest.mark.sandbox
def test_a_project_remote_cannot_lower_the_users_min_signers(project: Project, mallory: Machine, user: Path) -> None:
    user.write_text("min_signers = 2\n")
    project.file("lwrecipe.toml", '[[remote]]\nurl = "prebuilt"\nmin_signers = 1\n')
    carol = Machine(project, "carol")
    carol.trusted.append(mallory.public)
    result = carol.run("build", "base")
    assert result.code == 0, result.err
    assert "1 built" in result.err and "remote[0].min_signers" in result.err, result.err


SECRET_BLOB = b"internal admin page, not a download\n"
BLOB_SHA = "0" * 63 + "1"


def mirror_recipe(project: Project, kind: str) -> None:
    """A recipe whose URL no request may reach (127.0.0.1:9 is refused by the policy), so
    only a mirror could give its bytes."""
    source = {
        "files": 'url = "http://127.0.0.1:9/pkg.tar.gz"\nunpack = false\nname = "blob"\n',
        "debian": 'deb = "hello"\nversion = "1.0-1"\narch = "amd64"\n'
        'url = "http://127.0.0.1:9/debian/pool/h/hello_1.0-1_amd64.deb"\n',
    }[kind]
    project.recipe(
        "m",
        f'schema = 1\n[package]\nname = "m"\nversion = "1"\nlicense = "MIT"\n'
        f'[[sources]]\n{source}sha256 = "{BLOB_SHA}"\n[build]\nscript = "true"\n',
    )


@pytest.mark.parametrize("kind", ["files", "debian"])
def test_a_project_mirror_reaches_only_what_a_recipe_url_may(
    project: Project, user: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A project's download mirror is a URL the project chose: without acceptance it
    may not make this machine ask a loopback service (the user's own mirrors may)."""
    monkeypatch.delenv("LWRECIPE_ALLOW_PRIVATE", raising=False)
    mirror_recipe(project, kind)
    with fault_server() as server:
        server.add(f"/internal-admin/{BLOB_SHA}", SECRET_BLOB)
        server.add("/internal-admin/pool/h/hello_1.0-1_amd64.deb", SECRET_BLOB)
        table = {
            "files": f'[mirrors]\nfiles = ["{server.url("/internal-admin")}"]\n',
            "debian": f'[mirrors.debian]\n"http://127.0.0.1:9/debian" = ["{server.url("/internal-admin")}"]\n',
        }
        project.file("lwrecipe.toml", table[kind])
        plain = run(project, "fetch", "m")
        assert server.connections == 0 and not server.hits, (server.hits, plain.err)
        assert plain.code == 1 and "127.0.0.1 is a loopback address" in plain.err, plain.err
        accepted = run(project, "--accept-project-config", "fetch", "m")
        assert server.connections > 0, accepted.err  # the user's choice: any address (wrong bytes, still code 3)
        server.hits.clear()
        user.write_text(table[kind])  # the same mirror in the user's own config
        mine = run(project, "fetch", "m")
        assert server.hits, mine.err


@pytest.mark.parametrize(
    "values, loosened",
    [
        ("timeout = 3600\nmin_rate = 1\n", "remote[0].timeout, remote[0].min_rate"),
        ("timeout = 3600\nmin_rate = 20480\n", "remote[0].timeout"),
        ("timeout = 5\nmin_rate = 1\n", "remote[0].min_rate"),
        ("timeout = 5\nmin_rate = 20480\n", None),
    ],
)
def test_a_project_remote_may_only_tighten_its_deadlines(
    project: Project, user: Path, values: str, loosened: str | None
) -> None:
    """A project's remote may not make this machine wait longer on it, or accept a
    slower drip, than the user's defaults do: a looser value is ignored."""
    from lwrecipe.core.config.defaults import DEFAULT_MIN_RATE, DEFAULT_TIMEOUT
    from lwrecipe.remote.config import load_settings

    remote_recipe(project)
    with fault_server() as server:
        project.file("lwrecipe.toml", f'[[remote]]\nurl = "{server.url("")}"\n{values}')
        plain = run(project, "plan", "base")
        assert plain.code == 0, plain.err
        if loosened is None:
            assert "ignored" not in plain.err, plain.err
        else:
            assert f"lwrecipe.toml: {loosened}: ignored" in plain.err, plain.err
        warned: list[str] = []
        spec = load_settings(project.root, warn=warned.append).remotes[0]
        asked = dict(line.split(" = ") for line in values.splitlines())
        assert spec.timeout == min(float(asked["timeout"]), DEFAULT_TIMEOUT)
        assert spec.min_rate == max(float(asked["min_rate"]), DEFAULT_MIN_RATE)
        spec = load_settings(project.root, accept=True, warn=warned.append).remotes[0]
        assert (spec.timeout, spec.min_rate) == (float(asked["timeout"]), float(asked["min_rate"]))
        accepted = run(project, "--accept-project-config", "plan", "base")
        assert accepted.code == 0 and "ignored" not in accepted.err, accepted.err
