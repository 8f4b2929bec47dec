"""`cache gc --remote R --keep-lockfile F...`: a remote collected down to what
releases' lockfiles need, on a directory remote and on nginx with WebDAV listing
(the dav-ext module), and a push racing the collection left whole."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from tests.integration import test_remote
from tests.integration.test_remote import Machine, ok
from tests.servers import nginx_server

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]

project, alice = test_remote.project, test_remote.alice  # test_remote's builder and project


def release(machine: Machine, where: Path) -> tuple[Path, dict[str, dict]]:
    """Lock what `machine` built of app; the lockfile is copied to `where`. Returns it
    and the records it pins, by recipe."""
    ok(machine.run("lock", "app"))
    shutil.copy(machine.project.root / "lockfile.toml", where)
    pinned = tomllib.loads(where.read_text())["recipe"]
    return where, {
        name: json.loads((machine.cache / "ac" / entry["key"]).read_text()) for name, entry in pinned.items()
    }


def two_releases(project, alice, remote: str, tmp_path: Path):
    ok(alice.run("build", "app", "--push", "--remote", remote))
    first, old = release(alice, tmp_path / "1.lock")
    project.file("src/app.txt", "app, second release\n")
    ok(alice.run("build", "app", "--push", "--remote", remote))
    second, new = release(alice, tmp_path / "2.lock")
    return first, second, old["app"], new


def names(root: Path, area: str) -> set[str]:
    return {p.name for p in (root / area).iterdir()} if (root / area).is_dir() else set()


def test_a_directory_remote_keeps_exactly_the_lockfile_closure(project, alice, tmp_path) -> None:
    remote = tmp_path / "shared"
    first, second, old_app, new = two_releases(project, alice, str(remote), tmp_path)
    assert new["app"]["key"] != old_app["key"]
    gc = ["cache", "gc", "--remote", str(remote), "--keep-lockfile", str(second)]
    young = ok(alice.run(*gc))
    assert "removed 0 entries" in young and "younger than the grace period (1 h)" in young
    dry = alice.run(*gc, "--grace", "0", "--dry-run")
    assert dry.code == 0 and [line.split(" (")[0] for line in dry.out.splitlines()] == [
        f"would remove ac/{old_app['key'][:12]}"
    ], dry.out
    kept_blobs = {b for r in new.values() for b in (r["blob"]["sha256"], r["log"])}
    exclusive = {old_app["blob"]["sha256"], old_app["log"]} - kept_blobs  # the same log text: one blob, kept
    assert f"({2 + len(exclusive)} files, " in dry.out, dry.out  # the record, its provenance, what only it names
    assert old_app["key"] in names(remote, "ac")  # a dry run removes nothing
    for path in [
        remote / "ac" / old_app["key"],
        remote / "prov" / old_app["key"],
        *(remote / "cas" / b for b in exclusive),
    ]:
        os.utime(path, (time.time() - 10 * 86400,) * 2)
    assert "removed 0 entries" in ok(alice.run(*gc, "--grace", "0", "--older-than", "20"))
    assert "removed 1 entries" in ok(alice.run(*gc, "--grace", "0", "--older-than", "5"))
    kept = {r["key"] for r in new.values()}
    assert names(remote, "ac") == kept == names(remote, "prov")
    assert names(remote, "cas") == kept_blobs
    assert "removed 0 entries" in ok(alice.run(*gc, "--grace", "0", "--keep-lockfile", str(first)))
    bob = Machine(project, "bob")
    bob.trusted.append(alice.public)
    assert "0 built" in ok(bob.run("build", "app", "--remote", str(remote)))
    refused = alice.run("cache", "gc", "--remote", str(remote))
    assert refused.code == 2 and "--keep-lockfile" in refused.err and "Traceback" not in refused.err


def test_nginx_with_webdav_listing(project, alice, tmp_path) -> None:
    with nginx_server(tmp_path / "nginx", listing=True) as url:
        _, second, old_app, new = two_releases(project, alice, url, tmp_path)
        www = tmp_path / "nginx" / "www"
        gc = ["cache", "gc", "--remote", url, "--keep-lockfile", str(second), "--grace", "0"]
        big = ok(alice.run(*gc, "--max-size", "1G"))
        assert "removed 0 entries" in big  # it fits already: nothing needs to go
        dry = alice.run(*gc, "--dry-run")
        assert dry.code == 0 and f"would remove ac/{old_app['key'][:12]}" in dry.out
        assert old_app["key"] in names(www, "ac")
        assert "removed 1 entries" in ok(alice.run(*gc, "--max-size", "0"))
        assert names(www, "ac") == {r["key"] for r in new.values()}
        assert names(www, "cas") == {b for r in new.values() for b in (r["blob"]["sha256"], r["log"])}
    with nginx_server(tmp_path / "plain") as url:  # WebDAV without listing: said, not guessed
        ok(alice.run("cache", "push", url))
        unlisted = alice.run("cache", "gc", "--remote", url, "--keep-lockfile", str(second))
        assert unlisted.code != 0 and "PROPFIND" in unlisted.err and "dav-ext" in unlisted.err, unlisted.err


def test_a_push_racing_the_collection_is_left_whole(project, alice, tmp_path) -> None:
    """The push finds the blob it needs on the remote (named by a record the
    collection then removes, with the blob) and stops before sending its record;
    the collection runs; the push goes on. Its record must not be left without
    the blob."""
    remote = tmp_path / "shared"
    ok(alice.run("build", "app", "--push", "--remote", str(remote)))
    old = alice.records()["app"]  # the only build of app so far
    recipe = project.root / "recipes" / "app.toml"
    recipe.write_text(recipe.read_text().replace("script = '''\n", "script = '''\n# the same output, another key\n"))
    ok(alice.run("build", "app"))
    lockfile, records = release(alice, tmp_path / "2.lock")
    new = records["app"]
    assert new["key"] != old["key"] and new["blob"]["sha256"] == old["blob"]["sha256"]
    gate = tmp_path / "gate"
    gate.touch()
    env = {
        **os.environ,
        "LWRECIPE_SIGNING_KEY": str(alice.key),
        "LWRECIPE_TRUSTED_KEYS": alice.public,
        "LWRECIPE_TEST_PAUSE_AT": f"push-record:{gate}",
    }
    push = subprocess.Popen(
        [sys.executable, "-I", "-m", "lwrecipe", "--cache", str(alice.cache), "cache", "push", str(remote), "app"],
        cwd=project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not Path(f"{gate}.reached").exists():
        assert push.poll() is None and time.monotonic() < deadline, push.communicate()
        time.sleep(0.05)
    err = ok(alice.run("cache", "gc", "--remote", str(remote), "--keep-lockfile", str(lockfile), "--grace", "0"))
    assert "removed 1 entries" in err and not (remote / "cas" / old["blob"]["sha256"]).exists(), err.splitlines()
    gate.unlink()
    out, err = push.communicate(timeout=60)
    assert push.returncode == 0, err
    assert new["key"] in names(remote, "ac")
    record = json.loads((remote / "ac" / new["key"]).read_text())
    for blob in (record["blob"]["sha256"], record["log"]):
        assert (remote / "cas" / blob).is_file(), f"{blob[:12]} missing: the record was left without it"


def test_max_size_removes_the_oldest_first(project, alice, tmp_path) -> None:
    """Three releases of app; the third is kept. --max-size asks for just enough
    room that one unneeded release must go: the older one goes, the newer stays."""
    remote = tmp_path / "shared"
    apps = []
    for n, text in enumerate(["one", "two", "three"]):
        project.file("src/app.txt", f"app, release {text}\n")
        ok(alice.run("build", "app", "--push", "--remote", str(remote)))
        lockfile, records = release(alice, tmp_path / f"{n}.lock")
        apps.append(records["app"])
    kept = {b for r in records.values() for b in (r["blob"]["sha256"], r["log"])}
    now = time.time()
    for age, app in ((20, apps[0]), (10, apps[1])):
        for path in [
            remote / "ac" / app["key"],
            remote / "prov" / app["key"],
            *(remote / "cas" / b for b in {app["blob"]["sha256"], app["log"]} - kept),
        ]:
            os.utime(path, (now - age * 86400,) * 2)
    total = sum(
        p.stat().st_size
        for area in ("ac", "cas", "prov", "sig")
        if (remote / area).is_dir()
        for p in (remote / area).rglob("*")
        if p.is_file()
    )
    oldest = sum(
        p.stat().st_size
        for p in [
            remote / "ac" / apps[0]["key"],
            remote / "prov" / apps[0]["key"],
            *(remote / "cas" / b for b in {apps[0]["blob"]["sha256"]} - kept),
        ]
    )
    err = ok(
        alice.run(
            "cache",
            "gc",
            "--remote",
            str(remote),
            "--keep-lockfile",
            str(lockfile),
            "--grace",
            "0",
            "--max-size",
            str(total - oldest),
        )
    )
    assert "removed 1 entries" in err, err
    assert names(remote, "ac") == {r["key"] for r in records.values()} | {apps[1]["key"]}
