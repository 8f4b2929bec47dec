"""k-of-n trust between builders: co-signatures kept one object per signer beside
a record, `min_signers` on remotes, a poisoned remote caught and refused. Real
nginx and directory remotes; each builder is its own store with its own key."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.integration import test_remote
from tests.integration.test_remote import Machine, ok, recipe
from tests.servers import nginx_server

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]

# test_remote's builders: its project (no user config, no keys from the environment), alice and bob
project, alice, bob = test_remote.project, test_remote.alice, test_remote.bob


def config(machine: Machine, text: str) -> None:
    """The machine's own user config file (min_signers and the like)."""
    path = machine.project.root / f"{machine.name}-config.toml"
    path.write_text(text)
    machine.env["LWRECIPE_CONFIG"] = str(path)


def sig_objects(root, record: dict) -> list[str]:
    where = root / "sig" / record["key"]
    return sorted(p.name for p in where.iterdir()) if where.is_dir() else []


def test_a_reproduced_build_co_signs_and_then_substitutes(project, alice, bob, tmp_path) -> None:
    remote = tmp_path / "shared"
    ok(alice.run("build", "app", "--push", "--remote", str(remote)))
    carol = Machine(project, "carol")
    carol.trusted += [alice.public, bob.public]
    config(carol, "min_signers = 2\n")
    plan = carol.run("plan", "app", "--remote", str(remote))
    assert plan.code == 0 and "is signed by 1 of the 2 trusted keys required (alice)" in plan.err, plan.err
    assert "min_signers = 2" in plan.err
    why = carol.run("why", "app", "--remote", str(remote))
    assert why.code == 0 and "the same inputs as the newest record on remote" in why.out, why.out
    assert "which is not used here" in why.out and "min_signers = 2" in why.out, why.out
    # bob substitutes alice's record: pulled, not reproduced, so his key does not co-sign it
    assert "0 built" in ok(bob.run("build", "app", "--push", "--remote", str(remote)))
    assert "0 pushed" in ok(bob.run("cache", "push", str(remote)))
    record = alice.records()["app"]
    assert sig_objects(remote, record) == []
    # a rebuild that matches is bob's to vouch for: --check --push co-signs, beside the record
    ok(bob.run("build", "base", "app", "--check", "--push", "--remote", str(remote)))
    [cosig] = sig_objects(remote, record)
    entry = json.loads((remote / "sig" / record["key"] / cosig).read_text())
    assert entry["key"] == "bob" and set(entry) == {"key", "pub", "sig"}
    assert json.loads((remote / "ac" / record["key"]).read_text()) == record  # the record itself is untouched
    err = ok(carol.run("build", "app", "--remote", str(remote)))
    assert "0 built" in err and "2 pulled" not in err, err
    pulled = carol.records()["app"]
    assert {s["key"] for s in pulled["signatures"]} == {"alice", "bob"}
    assert pulled["output_id"] == record["output_id"]


def test_concurrent_co_signers_keep_each_others_signatures(project, alice, bob, tmp_path) -> None:
    """bob and carol rebuild what alice pushed to nginx and co-sign at the same time;
    both signatures stay, and dave, who wants three signers, substitutes."""
    carol = Machine(project, "carol")
    dave = Machine(project, "dave")
    for machine in (bob, carol, dave):
        machine.trusted = [alice.public, bob.public, carol.public]
        config(machine, "min_signers = 3\n")
    with nginx_server(tmp_path / "nginx") as url:
        ok(alice.run("build", "app", "--push", "--remote", url))
        for machine in (bob, carol):  # their own builds: alice's record alone is not enough for them
            assert "2 built" in ok(machine.run("build", "app", "--remote", url))
        env = [
            {
                **machine.env,
                "LWRECIPE_SIGNING_KEY": str(machine.key),
                "LWRECIPE_TRUSTED_KEYS": " ".join(machine.trusted),
            }
            for machine in (bob, carol)
        ]
        procs = [
            subprocess.Popen(
                [sys.executable, "-I", "-m", "lwrecipe", "--cache", str(m.cache), "cache", "push", url],
                cwd=project.root,
                env={**os.environ, **e},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for m, e in zip((bob, carol), env, strict=False)
        ]
        results = [p.communicate(timeout=120) for p in procs]
        assert all(p.returncode == 0 for p in procs), results
        assert all("2 pushed" in err for _, err in results), results
        www = tmp_path / "nginx" / "www"
        for record in alice.records().values():
            assert len(sig_objects(www, record)) == 2
        err = ok(dave.run("build", "app", "--remote", url))
        assert "0 built" in err, err
        assert {s["key"] for s in dave.records()["app"]["signatures"]} == {"alice", "bob", "carol"}


def test_a_poisoned_remote_is_caught_and_refused(project, alice, bob, tmp_path) -> None:
    """mallory, a trusted builder gone bad, pushes first: another output for noisy's
    key. bob's build disagrees: his push says so (exit 3) and co-signs nothing,
    `challenge` names the differing file, and with min_signers = 2 nobody
    substitutes mallory's output."""
    project.file("src/noisy.txt", "noisy\n")
    project.recipe(
        "noisy",
        recipe(
            "noisy",
            ["base"],
            'mkdir -p "$LW_OUT"\ncat /proc/sys/kernel/random/uuid > "$LW_OUT/stamp"\ncp noisy.txt "$LW_OUT/"',
        ),
    )
    mallory = Machine(project, "mallory")
    remote = tmp_path / "shared"
    ok(mallory.run("build", "noisy", "--push", "--remote", str(remote)))
    bob.trusted.append(mallory.public)
    config(bob, "min_signers = 2\n")
    ok(bob.run("build", "noisy", "--remote", str(remote)))  # his own build: mallory alone is not enough
    push = bob.run("cache", "push", str(remote))
    assert push.code == 3 and "builders disagree; not co-signed" in push.err, push.err
    noisy = mallory.records()["noisy"]
    assert sig_objects(remote, noisy) == []
    base = mallory.records()["base"]  # base is reproducible: bob co-signed it
    assert len(sig_objects(remote, base)) == 1
    challenge = bob.run("challenge", "noisy", "--remote", str(remote))
    assert challenge.code == 3 and "stamp" in challenge.out, challenge.out
    carol = Machine(project, "carol")
    carol.trusted += [mallory.public, bob.public]
    config(carol, f'[[remote]]\nurl = "{remote}"\nname = "shared"\nmin_signers = 2\n')
    err = ok(carol.run("build", "noisy"))
    assert "is signed by 1 of the 2 trusted keys required (mallory)" in err, err
    assert carol.records()["noisy"]["output_id"] != noisy["output_id"]  # built here instead
    assert carol.records()["base"]["output_id"] == base["output_id"]
    assert (carol.cache / "pulled" / base["key"]).is_file()  # two signers: substituted


@pytest.mark.parametrize("value", ["0", '"two"'])
def test_a_bad_min_signers_is_one_line(project, alice, value) -> None:
    config(alice, f"min_signers = {value}\n")
    result = alice.run("plan", "app", "--remote", "/nonexistent")
    assert result.code == 2 and "min_signers" in result.err and "Traceback" not in result.err, result.err


def test_why_against_a_remote_names_the_first_differing_input(project, alice, bob, tmp_path) -> None:
    """bob has built nothing; his checkout's base source differs from what alice
    built and pushed. `why app --remote` names it from the remote's records alone
    (its names/ index, then the records), without either cache's outputs."""
    remote = tmp_path / "shared"
    ok(alice.run("build", "app", "--push", "--remote", str(remote)))
    index = json.loads((remote / "names" / "app").read_text())
    assert index["name"] == "app" and index["keys"][0]["key"] == alice.records()["app"]["key"]
    same = bob.run("why", "app", "--remote", str(remote))
    assert same.code == 0 and "app: the same inputs as the newest record on remote" in same.out, same.out
    project.file("src/base.txt", "base, changed here\n")
    why = bob.run("why", "app", "--remote", str(remote))
    assert why.code == 0, why.err
    lines = why.out.splitlines()
    assert lines[0].startswith("app: key unknown") and "  base: " in why.out, why.out
    assert any("base: sources[0]: sha256 " in line for line in lines), why.out
    assert "root cause" in next(line for line in lines if line.lstrip().startswith("base:")), why.out
    doc = json.loads(bob.run("why", "app", "--remote", str(remote), "--json").out)
    assert doc[0]["causes"][0]["recipe"] == "base" and doc[0]["causes"][0]["root_cause"]
    empty = bob.run("why", "app", "--remote", str(tmp_path / "empty"))
    assert empty.code == 0 and "holds no record of it" in empty.out, empty.out
