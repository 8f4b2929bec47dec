"""Remote caches for real: nginx with WebDAV PUT, directory remotes, a fault-injecting
HTTP server, signed records, and two "machines" (two caches, two users)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import Project, run_subprocess
from tests.servers import fault_server, nginx_server

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]


def recipe(name: str, depends: list[str], script: str) -> str:
    deps = ", ".join(f'"{d}"' for d in depends)
    return (
        f'schema = 1\n[package]\nname = "{name}"\nversion = "1.0"\nlicense = "MIT"\n'
        f'[[sources]]\npath = "src/{name}.txt"\n'
        f"[build]\ndepends = [{deps}]\nhost_tools = [\"mkdir\", \"cp\", \"cat\"]\nscript = '''\n{script}\n'''\n"
    )


class Machine:
    """One user on one machine: a cache directory, a signing key, the keys it trusts."""

    def __init__(self, project: Project, name: str) -> None:
        self.project, self.name = project, name
        self.cache = project.root / f"cache-{name}"
        self.key = project.root / f"{name}.key"
        gen = run_subprocess("key", "generate", name, "--out", str(self.key), cwd=project.root)
        assert gen.code == 0, gen.err
        self.public = gen.out.strip()
        self.trusted: list[str] = [self.public]
        self.env: dict[str, str] = {}

    def run(self, *args: str, env: dict[str, str] | None = None):
        full = {
            "LWRECIPE_SIGNING_KEY": str(self.key),
            "LWRECIPE_TRUSTED_KEYS": " ".join(self.trusted),
            **self.env,
            **(env or {}),
        }
        return run_subprocess("--cache", str(self.cache), *args, cwd=self.project.root, env=full)

    def records(self) -> dict[str, dict]:
        if not (self.cache / "ac").is_dir():
            return {}
        return {(r := json.loads(p.read_text()))["name"]: r for p in (self.cache / "ac").iterdir()}


@pytest.fixture
def project(project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("LWRECIPE_CONFIG", str(tmp_path / "no-user-config.toml"))
    for var in ("LWRECIPE_REMOTES", "LWRECIPE_SIGNING_KEY", "LWRECIPE_TRUSTED_KEYS"):
        monkeypatch.delenv(var, raising=False)
    project.file("src/base.txt", "base\n")
    project.file("src/app.txt", "app\n")
    project.recipe("base", recipe("base", [], 'mkdir -p "$LW_OUT/lib"\ncp base.txt "$LW_OUT/lib/"'))
    project.recipe(
        "app",
        recipe("app", ["base"], 'mkdir -p "$LW_OUT/bin"\ncat "$LW_DEP_BASE/lib/base.txt" app.txt > "$LW_OUT/bin/app"'),
    )
    return project


@pytest.fixture
def alice(project: Project) -> Machine:
    return Machine(project, "alice")


@pytest.fixture
def bob(project: Project, alice: Machine) -> Machine:
    machine = Machine(project, "bob")
    machine.trusted.append(alice.public)
    return machine


def ok(result) -> str:
    assert result.code == 0, result.err
    return result.err


def verify_clean(machine: Machine) -> None:
    assert "0 corrupt quarantined" in ok(machine.run("cache", "verify"))


def test_push_to_nginx_pull_into_empty_cache_then_nothing_builds(project, alice, bob, tmp_path) -> None:
    assert "2 built" in ok(alice.run("build", "app"))
    assert all(r["signatures"][0]["key"] == "alice" for r in alice.records().values())
    with nginx_server(tmp_path / "nginx") as url:
        assert "2 pushed, 0 already" in ok(alice.run("cache", "push", url))
        assert "0 pushed, 2 already" in ok(alice.run("cache", "push", url))
        plan = bob.run("plan", "app", "--remote", url)
        assert plan.code == 0 and [line.split()[-1] for line in plan.out.splitlines()[1:]] == ["remote", "remote"]
        assert "2 pulled" in ok(bob.run("cache", "pull", url, "app"))
    err = ok(bob.run("build", "app"))
    assert "0 built, 2 cached" in err and "building" not in err
    assert {n: r["output_id"] for n, r in bob.records().items()} == {
        n: r["output_id"] for n, r in alice.records().items()
    }
    verify_clean(bob)


def test_build_substitutes_from_a_directory_remote_and_pulls_only_what_it_needs(project, alice, bob, tmp_path) -> None:
    remote = tmp_path / "shared"
    ok(alice.run("build", "app", "--push", "--remote", str(remote)))
    assert len(list((remote / "ac").iterdir())) == 2
    err = ok(bob.run("build", "app", "--remote", f"file://{remote}"))
    assert "0 built" in err and "1 pulled" in err and "1 remote" in err, err
    base_blob = alice.records()["base"]["blob"]["sha256"]
    assert not (bob.cache / "cas" / base_blob).exists()  # nothing here needed base's bytes
    out = project.root / "out"
    ok(bob.run("checkout", "app", str(out)))
    assert (out / "bin" / "app").read_text() == "base\napp\n"


def test_records_built_with_a_stand_in_are_shared_and_say_so(project, alice, bob, tmp_path) -> None:
    """A record noting --with-recipe stand-ins is a build record a remote accepts;
    the note travels with it."""
    standin = tmp_path / "standins" / "base.toml"
    standin.parent.mkdir()
    standin.write_text(
        recipe("base", [], 'mkdir -p "$LW_OUT/lib"\necho stand-in > "$LW_OUT/lib/base.txt"').replace(
            'path = "src/base.txt"', 'path = "src/app.txt"'
        )
    )
    remote = tmp_path / "shared"
    ok(alice.run("build", "app", "--with-recipe", f"base={standin}", "--push", "--remote", str(remote)))
    assert set(alice.records()["app"]["substituted"]) == {"base"}
    err = ok(bob.run("build", "app", "--with-recipe", f"base={standin}", "--remote", f"file://{remote}"))
    assert "0 built" in err, err
    assert (
        bob.records()["app"]["substituted"]["base"]["recipe"] == alice.records()["app"]["substituted"]["base"]["recipe"]
    )


def test_a_regenerated_key_re_signs_on_push_and_pullers_are_told_why(project, alice, bob, tmp_path) -> None:
    """alice regenerates her key under the same name: what she pushed before is
    signed by the old key only; bob, who now trusts the new one, is told it is a
    different key with a trusted name; alice's next push co-signs with the new key."""
    remote = tmp_path / "shared"
    ok(alice.run("build", "app", "--push", "--remote", str(remote)))
    alice.key.rename(project.root / "alice-old.key")
    gen = run_subprocess("key", "generate", "alice", "--out", str(alice.key), cwd=project.root)
    assert gen.code == 0, gen.err
    bob.trusted = alice.trusted = [gen.out.strip()]
    refused = bob.run("cache", "pull", str(remote), "app")
    assert (
        refused.code != 0
        and "signed by a key named 'alice' (SHA256:" in refused.err
        and "a different key with a trusted name" in refused.err
    ), refused.err
    assert "2 pushed" in ok(alice.run("cache", "push", str(remote)))  # co-signed, blobs already there
    assert "0 pushed, 2 already" in ok(alice.run("cache", "push", str(remote)))
    assert "2 pulled" in ok(bob.run("cache", "pull", str(remote), "app"))
    key = alice.records()["app"]["key"]
    assert len(json.loads((remote / "ac" / key).read_text())["signatures"]) == 1  # the record is not rewritten
    assert len(list((remote / "sig" / key).iterdir())) == 1  # the new key's signature, beside it
    assert len({s["pub"] for s in bob.records()["app"]["signatures"]}) == 2


def test_tampered_blob_is_refused_and_the_target_built(project, alice, bob, tmp_path) -> None:
    ok(alice.run("build", "app"))
    app_blob = alice.records()["app"]["blob"]["sha256"]
    with nginx_server(tmp_path / "nginx") as url:
        ok(alice.run("cache", "push", url))
        served = tmp_path / "nginx" / "www" / "cas" / app_blob
        served.write_bytes(served.read_bytes()[:-3] + b"xyz")
        pull = bob.run("cache", "pull", url, "app")
        assert pull.code == 3 and f"cas/{app_blob[:12]}: served bytes with another sha256; refused" in pull.err
        assert not (bob.cache / "cas" / app_blob).exists() and "app" not in bob.records()
        verify_clean(bob)
        err = ok(bob.run("build", "app", "--remote", url))
        assert "served bytes with another sha256" in err and "building it here instead" in err
        assert "1 built" in err
    assert bob.records()["app"]["output_id"] == alice.records()["app"]["output_id"]
    verify_clean(bob)


def test_untrusted_and_forged_records_are_refused(project, alice, tmp_path) -> None:
    mallory = Machine(project, "mallory")
    remote = tmp_path / "shared"
    ok(mallory.run("build", "app", "--push", "--remote", str(remote)))
    carol = Machine(project, "carol")
    carol.trusted.append(alice.public)
    pull = carol.run("cache", "pull", str(remote), "app")
    assert pull.code == 3
    assert f"error: file://{remote}: ac/" in pull.err and "signed by untrusted key 'mallory'; refused" in pull.err
    err = ok(carol.run("build", "app", "--remote", str(remote)))
    assert "untrusted key 'mallory'" in err and "2 built" in err
    opted = ok(Machine(project, "dave").run("cache", "pull", str(remote), "app", "--no-verify-signatures"))
    assert "--no-verify-signatures: records from" in opted and "2 pulled" in opted

    carol.trusted.append(mallory.public)
    for path in (remote / "ac").iterdir():
        record = json.loads(path.read_text())
        record["duration_s"] = 0.001  # altered after signing
        path.write_text(json.dumps(record))
    fresh = Machine(project, "erin")
    fresh.trusted.append(mallory.public)
    forged = fresh.run("cache", "pull", str(remote), "app")
    assert (
        forged.code == 3
        and "signature by trusted key 'mallory' does not verify: the record's bytes were altered" in forged.err
    )


def serve_cache(server, machine: Machine) -> None:
    for kind in ("cas", "ac"):
        for path in (machine.cache / kind).iterdir():
            server.add(f"/{kind}/{path.name}", path.read_bytes())


def test_dropped_connections_and_errors_are_retried_then_reported(project, alice, bob) -> None:
    ok(alice.run("build", "app"))
    app = alice.records()["app"]
    with fault_server() as server:
        serve_cache(server, alice)
        blob = f"/cas/{app['blob']['sha256']}"
        server.behaviour[blob] = ["reset:20", "500"]
        err = ok(bob.run("cache", "pull", server.url(""), "app"))
        assert "2 pulled" in err and server.hits[blob] == 3 and server.range_requests[blob] >= 1
    with fault_server() as server:
        serve_cache(server, alice)
        blob = f"/cas/{app['blob']['sha256']}"
        server.behaviour[blob] = ["500"] * 20
        carol = Machine(project, "carol")
        carol.trusted.append(alice.public)
        failed = carol.run("cache", "pull", server.url(""), "app")
        assert failed.code == 1 and "HTTP 500" in failed.err and "(after 4 attempts)" in failed.err
        assert not (carol.cache / "cas" / app["blob"]["sha256"]).exists() and "app" not in carol.records()
        assert not list((carol.cache / "tmp").iterdir())
        verify_clean(carol)


def test_push_retries_and_leaves_no_record_without_blobs(project, alice) -> None:
    ok(alice.run("build", "app"))
    app = alice.records()["app"]
    with fault_server() as server:
        server.behaviour[f"PUT /cas/{app['blob']['sha256']}"] = ["500", "reset"]
        assert "2 pushed" in ok(alice.run("cache", "push", server.url(""), "app"))
        assert server.hits[f"PUT /cas/{app['blob']['sha256']}"] == 3
    with fault_server() as server:
        server.behaviour[f"PUT /cas/{app['blob']['sha256']}"] = ["500"] * 20
        failed = alice.run("cache", "push", server.url(""), "app")
        assert failed.code == 1 and "PUT cas/" in failed.err
        assert f"/ac/{app['key']}" not in server.files  # the record never goes before its blobs


def test_auth_header_is_sent_and_never_shown(project, alice, bob) -> None:
    ok(alice.run("build", "app"))
    with fault_server() as server:
        serve_cache(server, alice)
        Path(os.environ["LWRECIPE_CONFIG"]).write_text(  # the user's own config: a project's cannot send a token
            f'[[remote]]\nname = "team"\nurl = "{server.url("")}"\nauth_env = "TEAM_TOKEN"\n'
            'auth_header = "X-Cache-Token"\n'
        )
        missing = bob.run("cache", "pull", "team", "app")
        assert missing.code == 2 and "auth_env TEAM_TOKEN is not set" in missing.err
        pulled = bob.run("-v", "cache", "pull", "team", "app", env={"TEAM_TOKEN": "s3cret-value"})
        assert pulled.code == 0, pulled.err
        assert all(h.get("X-Cache-Token") == "s3cret-value" for h in server.seen_headers)
        assert "s3cret" not in pulled.out + pulled.err
        built = bob.run("build", "app", "--rebuild", env={"TEAM_TOKEN": "s3cret-value"})
        assert built.code == 0 and "s3cret" not in built.out + built.err
    for path in bob.cache.rglob("*"):
        assert not path.is_file() or b"s3cret" not in path.read_bytes()


def test_two_machines_two_users_share_work(project, alice, bob, tmp_path) -> None:
    alice.trusted.append(bob.public)
    remote = str(tmp_path / "team")
    ok(alice.run("build", "base", "--push", "--remote", remote))
    err = ok(bob.run("build", "app", "--push", "--remote", remote))
    assert "base: pulled" in err and "app: built" in err
    assert bob.records()["app"]["signatures"][0]["key"] == "bob"
    err = ok(alice.run("build", "app", "--remote", remote))
    assert "0 built, 1 cached, 1 pulled" in err


def test_unreachable_remote_is_a_warning_given_once(project, alice) -> None:
    from tests.servers import free_port

    url = f"http://127.0.0.1:{free_port()}/cache"
    err = ok(alice.run("build", "app", "--remote", url))
    assert "2 built" in err
    assert err.count("not asked again in this run") == 1, err


def test_challenge_says_where_builders_agree_and_shows_what_differs(project, alice, bob, tmp_path) -> None:
    """alice and bob build the same inputs and push to their own remotes: base is
    reproducible (agree), noisy is not (differ: exit 3, the differing file named);
    --rebuild adds a fresh local build as one more builder."""
    project.file("src/noisy.txt", "noisy\n")
    project.recipe(
        "noisy",
        recipe(
            "noisy",
            ["base"],
            'mkdir -p "$LW_OUT"\ncat /proc/sys/kernel/random/uuid > "$LW_OUT/stamp"\ncp noisy.txt "$LW_OUT/"',
        ),
    )
    remote_a, remote_b = tmp_path / "a", tmp_path / "b"
    ok(alice.run("build", "noisy", "--push", "--remote", str(remote_a)))
    ok(bob.run("build", "noisy", "--push", "--remote", str(remote_b)))
    alice.trusted.append(bob.public)
    result = alice.run("challenge", "noisy", "--remote", str(remote_a), "--remote", str(remote_b))
    assert result.code == 3, result.err
    rows = {line.split()[0]: line.split() for line in result.out.splitlines()[1:] if line and not line.startswith(" ")}
    assert rows["base"][-1] == "agree" and rows["noisy"][-1] == "differ", result.out
    assert "noisy: builders differ" in result.out and "stamp" in result.out, result.out
    assert "builders disagree on noisy" in result.err
    rebuilt = alice.run("challenge", "base", "--rebuild")
    assert rebuilt.code == 0, rebuilt.err
    header, row = rebuilt.out.splitlines()[:2]
    assert header.split() == ["NAME", "KEY", "local", "rebuild", "VERDICT"] and row.split()[-1] == "agree"
    nothing = bob.run("challenge", "base", "--remote", str(tmp_path / "empty"))
    assert nothing.code == 0 and "agree (some missing)" in nothing.out
