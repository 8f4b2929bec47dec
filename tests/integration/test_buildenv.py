"""Builds on the pinned build environment (recipes/buildenv.toml, real Debian
packages): keys that no host tool changes, a root file system with nothing of the
host's, and hello-wasm reproduced in two stores."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO, Project, run_subprocess, script_recipe

HELLO = REPO / "examples" / "hello-wasm" / "hello-wasm.toml"

# network: the environment's Debian packages
pytestmark = [pytest.mark.slow, pytest.mark.sandbox, pytest.mark.network]


@pytest.fixture(scope="session")
def env_store(tmp_path_factory: pytest.TempPathFactory, deb_mirror: dict[str, str]) -> Path:
    """A store in which the environment is built (once per run)."""
    store = tmp_path_factory.mktemp("envstore")
    result = run_subprocess("--cache", str(store), "build", "buildenv", cwd=REPO, env=deb_mirror)
    assert result.code == 0, result.err
    return store


def on_env(project: Project, name: str, script: str, tools: str = "") -> None:
    shutil.copy(REPO / "recipes" / "buildenv.toml", project.root / "recipes" / "buildenv.toml")
    project.recipe(
        name, script_recipe(name, f'mkdir -p "$LW_OUT"\n{script}', f'environment = "buildenv"\nhost_tools = [{tools}]')
    )


def keys(store: Path, cwd: Path, *targets: str, env: dict[str, str] | None = None) -> dict[str, str]:
    result = run_subprocess("--cache", str(store), "plan", "--json", *targets, cwd=cwd, env=env)
    assert result.code == 0, result.err
    return {row["name"]: row["key"] for row in json.loads(result.out)}


def output_id(store: Path, cwd: Path, target: str) -> str:
    result = run_subprocess("--cache", str(store), "show", "--json", target, cwd=cwd)
    key = json.loads(result.out)["key"]
    return json.loads((store / "ac" / key).read_text())["output_id"]


FAKE = "#!/bin/sh\necho fake host tool\n"


@pytest.fixture
def other_host_tools(tmp_path: Path):
    """A PATH and a /usr/local/bin where perl, make, clang-16 and friends are other
    programs, as on a machine of another image. Yields the environment to run with."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    names = ["perl", "make", "clang-16", "wasm-ld-16", "mkdir", "cp", "patch"]
    for name in names:
        (fake / name).write_text(FAKE)
        (fake / name).chmod(0o755)
    planted = []
    local = Path("/usr/local/bin")
    if os.access(local, os.W_OK):
        for name in ("perl", "make", "clang-16"):
            if not (local / name).exists():
                (local / name).write_text(FAKE)
                (local / name).chmod(0o755)
                planted.append(local / name)
    yield {"PATH": f"{fake}:/usr/local/bin:{os.environ['PATH']}", "LWRECIPE_TOOL_CACHE": str(tmp_path / "tools.json")}
    for path in planted:
        path.unlink()


def test_keys_and_outputs_do_not_change_with_the_hosts_tools(project, env_store, other_host_tools) -> None:
    on_env(
        project,
        "probe",
        'for t in perl make clang-16; do echo "$t $(command -v $t) '
        '$(sha256sum "$(command -v $t)" | cut -c1-64)"; done > "$LW_OUT/tools"',
        tools='"perl", "make", "clang-16"',
    )
    project.recipe(
        "hosty",
        'schema = 1\n[package]\nname = "hosty"\nversion = "1"\nlicense = "MIT"\n'
        '[build]\nhost_tools = ["perl"]\nscript = "true"\n',
    )
    system = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}  # this machine's own tools, none of the fakes
    before = {
        **keys(env_store, project.root, "probe", "hosty", env=system),
        **keys(env_store, REPO, str(HELLO), env=system),
    }
    after = {
        **keys(env_store, project.root, "probe", "hosty", env=other_host_tools),
        **keys(env_store, REPO, str(HELLO), env=other_host_tools),
    }
    assert before["hosty"] != after["hosty"]  # the fake tools are seen: a host-tool recipe's key moves
    for name in ("buildenv", "probe", "hello-wasm"):
        assert before[name] and before[name] == after[name], name
    result = run_subprocess("--cache", str(env_store), "build", "probe", cwd=project.root, env=other_host_tools)
    assert result.code == 0, result.err
    first = output_id(env_store, project.root, "probe")
    result = run_subprocess("--cache", str(env_store), "build", "--check", "probe", cwd=project.root, env=system)
    assert result.code == 0, result.err  # rebuilt with this machine's own tools first on PATH: the same bytes
    assert output_id(env_store, project.root, "probe") == first
    out = project.root / "out"
    assert run_subprocess("--cache", str(env_store), "checkout", "probe", str(out), cwd=project.root).code == 0
    env_root = env_store / "envs" / output_id(env_store, REPO, "buildenv")
    for line in (out / "tools").read_text().splitlines():
        name, path, digest = line.split()
        assert path == f"/usr/bin/{name}"
        real = subprocess.run(
            ["sha256sum", str(env_root / "usr" / "bin" / name)], capture_output=True, text=True
        ).stdout  # the environment's own binary, not the fake and not the host's
        assert digest == real.split()[0]


def test_a_build_sees_nothing_of_the_hosts_file_system(project, env_store) -> None:
    tag = uuid.uuid4().hex
    planted = [
        Path(f"/usr/share/lwrecipe-host-only-{tag}"),
        Path(f"/etc/lwrecipe-host-only-{tag}"),
        Path(f"/opt/lwrecipe-host-only-{tag}"),
        Path.home() / f"lwrecipe-host-only-{tag}",
    ]
    made = []
    try:
        for path in planted:
            try:
                path.write_text("host secret\n")
                made.append(path)
            except OSError:
                pass
        assert made, "could not plant any host-only file"
        checks = " ".join(str(p) for p in planted) + f" /etc/shadow {Path.home()}"
        on_env(
            project,
            "peek",
            f'for p in {checks}; do if test -e "$p"; then echo "visible $p"; '
            f'else echo "absent $p"; fi; done > "$LW_OUT/seen"; id -un > "$LW_OUT/user"; '
            'id -u >> "$LW_OUT/user"; cat /proc/sys/kernel/hostname > "$LW_OUT/host"; '
            'echo "$PATH" > "$LW_OUT/path"; touch /usr/x 2>/dev/null && echo writable > "$LW_OUT/usr" || true',
        )
        result = run_subprocess("--cache", str(env_store), "build", "peek", cwd=project.root)
        assert result.code == 0, result.err
        out = project.root / "out"
        assert run_subprocess("--cache", str(env_store), "checkout", "peek", str(out), cwd=project.root).code == 0
        seen = (out / "seen").read_text().splitlines()
        assert seen and all(line.startswith("absent ") for line in seen), seen
        assert (out / "user").read_text() == "builder\n1000\n"
        assert (out / "host").read_text() == "lwrecipe\n"
        assert (out / "path").read_text() == "/usr/bin:/bin:/usr/sbin:/sbin\n"
        assert not (out / "usr").exists()
    finally:
        for path in made:
            path.unlink()


def test_a_tool_missing_from_the_environment_is_named(project, env_store) -> None:
    on_env(project, "needs", "true", tools='"make", "no-such-tool"')
    result = run_subprocess("--cache", str(env_store), "build", "needs", cwd=project.root)
    assert result.code != 0
    assert "needs: host tool 'no-such-tool' not found in the environment 'buildenv'" in result.err


def test_plan_and_show_say_what_a_recipe_is_built_on(project, env_store) -> None:
    on_env(project, "probe", "true")
    project.recipe(
        "hosty",
        'schema = 1\n[package]\nname = "hosty"\nversion = "1"\nlicense = "MIT"\n'
        '[build]\nhost_tools = ["perl"]\nscript = "true"\n',
    )
    result = run_subprocess("--cache", str(env_store), "plan", "--json", "probe", "hosty", cwd=project.root)
    assert {r["name"]: r["built_on"] for r in json.loads(result.out)} == {
        "buildenv": "own-sources",
        "probe": "buildenv",
        "hosty": "host",
    }
    shown = run_subprocess("--cache", str(env_store), "show", "hosty", cwd=project.root).out
    assert "built on: host tools (fingerprinted into the key" in shown


@pytest.mark.root  # airgapped: a network namespace of its own
def test_hello_wasm_on_the_environment_reproduces_in_two_stores_and_runs(tmp_path, deb_mirror) -> None:
    """README's main job: the environment and hello-wasm built from nothing in two
    stores give the same output ids, and the module runs in node. The second store
    is an air-gapped site's: no network, --offline, every input from a directory
    that `mirror export` wrote from the first."""
    if not shutil.which("node"):
        pytest.skip("node missing")
    ids = []
    export = tmp_path / "mirror"
    for cache in ("c1", "c2"):
        if cache == "c1":
            result = run_subprocess("--cache", str(tmp_path / cache), "build", str(HELLO), cwd=REPO, env=deb_mirror)
        else:
            exported = run_subprocess(
                "--cache", str(tmp_path / "c1"), "mirror", "export", str(export), str(HELLO), "--offline", cwd=REPO
            )
            assert exported.code == 0, exported.err
            result = run_subprocess(
                "--cache",
                str(tmp_path / cache),
                "build",
                "--offline",
                str(HELLO),
                cwd=REPO,
                env={"LWRECIPE_MIRRORS": str(export)},
                airgapped=True,
            )
        assert result.code == 0, result.err
        records = [json.loads(p.read_text()) for p in (tmp_path / cache / "ac").iterdir()]
        ids.append({r["name"]: r["output_id"] for r in records})
        assert (tmp_path / cache / "envs" / ids[-1]["buildenv"] / "usr" / "bin" / "clang-16").exists()
    assert ids[0] == ids[1] and set(ids[0]) == {"buildenv", "hello-wasm"}
    out = tmp_path / "out"
    assert run_subprocess("--cache", str(tmp_path / "c1"), "checkout", str(HELLO), str(out), cwd=REPO).code == 0
    run = subprocess.run(
        ["node", str(REPO / "examples" / "hello-wasm" / "run.mjs"), str(out / "hello.wasm")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout == "hello from wasm32, built by lwrecipe\nfib(10) = 55\n"


def test_the_committed_lockfile_holds_on_any_machine(tmp_path, env_store, other_host_tools) -> None:
    """`lock --check` passes with an empty cache, with other host tools first on PATH,
    and with a store that built the environment here (its output id is the one locked)."""
    for cache, env in ((tmp_path / "empty", None), (tmp_path / "empty2", other_host_tools), (env_store, None)):
        result = run_subprocess("--cache", str(cache), "lock", "--check", "--offline", cwd=REPO, env=env)
        assert result.code == 0, result.err
    locked = (REPO / "lockfile.toml").read_text()
    assert output_id(env_store, REPO, "buildenv") in locked


def test_a_build_on_pinned_content_refuses_to_run_without_a_sandbox(project, env_store, tmp_path) -> None:
    """--no-sandbox cannot give a build a root file system: one error line, nothing stored."""
    broken = tmp_path / "broken-bwrap"
    broken.mkdir()
    (broken / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    (broken / "bwrap").chmod(0o755)
    on_env(project, "probe", "true")
    env = {"PATH": f"{broken}:{os.environ['PATH']}"}
    result = run_subprocess(
        "--cache",
        str(tmp_path / "c"),
        "build",
        "--no-sandbox",
        "probe",
        cwd=project.root,
        env={**env, "LWRECIPE_MIRRORS": str(env_store / "sources")},
    )
    assert result.code == 1 and "Traceback" not in result.err
    assert (
        "error: buildenv: a build on its own sources needs bubblewrap (`apt-get install bubblewrap`); "
        "--no-sandbox cannot give it a root file system"
    ) in result.err
    assert not list((tmp_path / "c" / "ac").iterdir())
