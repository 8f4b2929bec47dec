"""A shared directory remote that someone else can write into: links planted where
the remote's areas and objects belong must not make `cache push`, `cache pull` or
`cache gc --remote` read, write or delete anything outside the remote's root. A
link where an object belongs is reported (one warning line naming the remote and
the object) and skipped; victims keep their bytes, modes and directories. Each
fixture failed on the code before directory.py (gc deleted the victims, push
wrote into them); the last test is the property over generated trees."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Project, Result, run_subprocess
from tests.hostile_trees import DECOY, link_targets, make_decoy, materialise, snapshot, trees
from tests.integration.test_remote import recipe

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]


@dataclass
class Seed:
    """What one real build left: a project, alice's cache and key, a remote holding
    both records, and a lockfile naming them."""

    project: Path
    cache: Path
    remote: Path
    lockfile: Path
    env: dict[str, str]
    records: dict[str, dict]


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Seed:
    root = tmp_path_factory.mktemp("seed")
    project = Project(root / "project")
    project.file("src/base.txt", "base\n")
    project.file("src/app.txt", "app\n")
    project.recipe("base", recipe("base", [], 'mkdir -p "$LW_OUT/lib"\ncp base.txt "$LW_OUT/lib/"'))
    project.recipe(
        "app",
        recipe("app", ["base"], 'mkdir -p "$LW_OUT/bin"\ncat "$LW_DEP_BASE/lib/base.txt" app.txt > "$LW_OUT/bin/app"'),
    )
    key = root / "alice.key"
    env = {"LWRECIPE_CONFIG": str(root / "no-user-config.toml"), "LWRECIPE_REMOTES": ""}
    gen = run_subprocess("key", "generate", "alice", "--out", str(key), cwd=project.root, env=env)
    assert gen.code == 0, gen.err
    env |= {"LWRECIPE_SIGNING_KEY": str(key), "LWRECIPE_TRUSTED_KEYS": gen.out.strip()}
    cache, remote = root / "cache", root / "remote"
    built = run_subprocess(
        "--cache", str(cache), "build", "app", "--push", "--remote", str(remote), cwd=project.root, env=env
    )
    assert built.code == 0, built.err
    locked = run_subprocess("--cache", str(cache), "lock", "app", cwd=project.root, env=env)
    assert locked.code == 0, locked.err
    records = {
        name: json.loads((cache / "ac" / entry["key"]).read_text())
        for name, entry in tomllib.loads((project.root / "lockfile.toml").read_text())["recipe"].items()
    }
    return Seed(project.root, cache, remote, project.root / "lockfile.toml", env, records)


@dataclass
class World:
    """A fresh copy of the seed for one test: the remote (to plant links in), alice's
    cache, an empty cache for a puller, and a decoy tree outside all of them."""

    seed: Seed
    remote: Path
    cache: Path
    empty: Path
    decoy: Path

    def run(self, *args: str, cache: Path | None = None) -> Result:
        result = run_subprocess("--cache", str(cache or self.cache), *args, cwd=self.seed.project, env=self.seed.env)
        assert "Traceback" not in result.err, result.err
        return result

    def gc(self) -> Result:
        return self.run(
            "cache", "gc", "--remote", str(self.remote), "--keep-lockfile", str(self.seed.lockfile), "--grace", "0"
        )

    def push(self) -> Result:
        return self.run("cache", "push", str(self.remote))

    def pull(self) -> Result:
        return self.run("cache", "pull", str(self.remote), "app", cache=self.empty)


@pytest.fixture
def world(seed: Seed, tmp_path: Path) -> World:
    remote = tmp_path / "remote"
    shutil.copytree(seed.remote, remote, symlinks=True)
    cache = tmp_path / "cache"
    shutil.copytree(seed.cache, cache, symlinks=True, ignore=shutil.ignore_patterns("locks"))
    return World(seed, remote, cache, tmp_path / "empty", make_decoy(tmp_path / "decoy"))


def unchanged(world: World, before: dict, mtime: int) -> None:
    assert snapshot(world.decoy) == before
    assert os.stat(world.decoy / "victim-dir").st_mtime_ns == mtime  # nothing made and removed there either


def planted(world: World) -> tuple[dict, int]:
    return snapshot(world.decoy), os.stat(world.decoy / "victim-dir").st_mtime_ns


def replace_with_link(path: Path, target: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.symlink_to(target)


@pytest.mark.parametrize("area", ["ac", "cas", "sig", "prov", "names"])
def test_an_area_that_is_a_link_is_not_collected_through(world: World, area: str) -> None:
    """`ac -> /victim-dir`: gc listed the victim's files as records and deleted them."""
    for name in ("0" * 64, "1" * 64):  # names a gc would take for records, blobs, signatures
        (world.decoy / "victim-dir" / name).write_bytes(b"victim\n")
        (world.decoy / "victim-dir" / name).chmod(0o600)
    for record in world.seed.records.values():  # so that push writes every area (names/ too)
        (world.remote / "ac" / record["key"]).unlink()
    replace_with_link(world.remote / area, world.decoy / "victim-dir")
    before = planted(world)
    result = world.gc()
    unchanged(world, *before)
    if area in ("ac", "cas", "sig", "prov"):
        assert result.code != 0 and f"{area}: a link" in result.err, result.err
    world.push()
    unchanged(world, *before)
    world.pull()
    unchanged(world, *before)


def test_a_signature_directory_that_is_a_link_is_skipped_by_gc(world: World) -> None:
    """`sig/<key> -> /victim-dir`: gc took the victim's files for a record's co-signatures."""
    (world.remote / "sig").mkdir(exist_ok=True)
    (world.remote / "sig" / ("f" * 64)).symlink_to(world.decoy / "victim-dir")
    before = planted(world)
    result = world.gc()
    assert result.code == 0, result.err
    unchanged(world, *before)
    assert f"sig/{'f' * 64}: a link" in result.err, result.err
    assert (world.remote / "sig" / ("f" * 64)).is_symlink()  # reported, not removed either


def test_a_blob_that_is_a_link_to_a_host_file_is_not_written_through(world: World) -> None:
    """`cas/<sha> -> /victim-file`: push took the victim for the blob (or wrote through it)."""
    for record in world.seed.records.values():
        replace_with_link(world.remote / "cas" / record["blob"]["sha256"], world.decoy / "victim.txt")
        (world.remote / "ac" / record["key"]).unlink()  # so push sends the blobs again
    before = planted(world)
    result = world.push()
    unchanged(world, *before)
    assert result.code == 0 and "2 pushed" in result.err, result.err
    for record in world.seed.records.values():
        blob = world.remote / "cas" / record["blob"]["sha256"]
        assert not blob.is_symlink() and blob.read_bytes() == (world.cache / "cas" / blob.name).read_bytes()
    assert "0 corrupt" in world.run("cache", "verify").err


def test_a_recipe_index_that_is_a_link_is_not_written_through(world: World) -> None:
    """`names -> /victim-dir` holding a file named like a recipe: push overwrote it."""
    (world.decoy / "victim-dir" / "app").write_bytes(b"#!/bin/sh\necho the victim's own app\n")
    replace_with_link(world.remote / "names", world.decoy / "victim-dir")
    for record in world.seed.records.values():
        (world.remote / "ac" / record["key"]).unlink()
    before = planted(world)
    world.push()
    unchanged(world, *before)


def test_a_staging_directory_that_is_a_link_is_not_written_in(world: World) -> None:
    """`tmp -> /victim-dir`: push made (then moved away) its temporary files in the victim."""
    replace_with_link(world.remote / "tmp", world.decoy / "victim-dir")
    for record in world.seed.records.values():
        (world.remote / "ac" / record["key"]).unlink()
    before = planted(world)
    result = world.push()
    unchanged(world, *before)
    assert result.code != 0 and "tmp: a link" in result.err, result.err


def test_a_record_that_is_a_link_is_reported_and_not_used(world: World, tmp_path: Path) -> None:
    """`ac/<key>` a link to a valid record elsewhere: pull used it as the remote's record."""
    key = world.seed.records["app"]["key"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.move(world.remote / "ac" / key, elsewhere / key)
    (world.remote / "ac" / key).symlink_to(elsewhere / key)
    result = world.pull()
    assert f"ac/{key[:12]}" in result.err and "a link" in result.err, result.err
    assert not (world.empty / "ac" / key).exists()
    listed = world.gc()
    assert listed.code == 0 and (elsewhere / key).is_file(), listed.err


def test_a_blob_that_is_a_link_is_not_pulled_through(world: World, tmp_path: Path) -> None:
    """`cas/<sha>` a link to the right bytes elsewhere: pull read through it."""
    blob = world.seed.records["app"]["blob"]["sha256"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.move(world.remote / "cas" / blob, elsewhere / blob)
    (world.remote / "cas" / blob).symlink_to(elsewhere / blob)
    result = world.pull()
    assert result.code != 0 and f"cas/{blob[:12]}" in result.err and "a link" in result.err, result.err
    assert not (world.empty / "cas" / blob).exists()


def test_gc_removes_only_regular_files_inside_the_remote(world: World) -> None:
    """Links, FIFOs and directories where files belong stay; the real garbage goes."""
    stale = world.remote / "cas" / ("e" * 64)
    stale.write_bytes(b"no record names this\n")
    (world.remote / "cas" / ("d" * 64)).symlink_to(world.decoy / "victim.txt")
    os.mkfifo(world.remote / "ac" / ("c" * 64))
    (world.remote / "prov" / ("b" * 64)).mkdir()
    before = planted(world)
    result = world.gc()
    assert result.code == 0, result.err
    unchanged(world, *before)
    assert not stale.exists() and (world.remote / "cas" / ("d" * 64)).is_symlink()
    assert (world.remote / "prov" / ("b" * 64)).is_dir()
    assert f"cas/{'d' * 64}: a link" in result.err, result.err


# The property: whatever someone planted in the remote — trees of files, directories
# and links (relative, climbing out, absolute into the decoy, dangling, chained,
# looping) inside its areas, or a link or file in place of an area — push, pull and
# gc --remote change nothing outside the remote's root (and the caches they fill).

AREA_NAMES = ("ac", "cas", "sig", "tmp", "names", "prov")


@st.composite
def hostile_remotes(draw: st.DrawFn) -> dict[str, tuple[str, object]]:
    """For some areas: ("tree", a tree planted inside it), ("link", a target it is
    replaced by) or ("file", bytes it is replaced by)."""
    plan = {}
    for area in draw(st.lists(st.sampled_from(AREA_NAMES), unique=True, max_size=4)):
        plan[area] = draw(
            st.one_of(
                st.tuples(st.just("tree"), trees),
                st.tuples(st.just("link"), link_targets),
                st.tuples(st.just("file"), st.binary(max_size=8)),
            )
        )
    return plan


def plant(remote: Path, decoy: Path, plan: dict[str, tuple[str, object]]) -> None:
    for area, (how, what) in plan.items():
        path = remote / area
        if how == "tree":
            materialise(what, path, decoy)  # beside what the area holds
            continue
        if path.is_dir():
            shutil.rmtree(path)
        if how == "link":
            target = str(what)
            path.symlink_to(target.replace(DECOY, str(decoy), 1) if target.startswith(DECOY) else target)
        else:
            path.write_bytes(what)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(plan=hostile_remotes())
def test_nothing_outside_a_hostile_remote_changes(
    seed: Seed, monkeypatch: pytest.MonkeyPatch, plan: dict[str, tuple[str, object]]
) -> None:
    from lwrecipe.cli import main

    for name, value in seed.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(seed.project)
    base = Path(tempfile.mkdtemp(prefix="hostile-remote-"))
    try:
        remote, cache, empty = base / "remote", base / "cache", base / "empty"
        shutil.copytree(seed.remote, remote, symlinks=True)
        shutil.copytree(seed.cache, cache, symlinks=True, ignore=shutil.ignore_patterns("locks"))
        for record in seed.records.values():  # push must send again: through whatever is planted
            (remote / "ac" / record["key"]).unlink(missing_ok=True)
        decoy = make_decoy(base / "decoy")
        plant(remote, decoy, plan)
        outside = (remote, cache, empty)
        before = snapshot(base, skip=outside)
        codes = []
        for args in (
            ["--cache", str(cache), "cache", "push", str(remote)],
            ["--cache", str(empty), "cache", "pull", str(remote), "app"],
            [
                "--cache",
                str(cache),
                "cache",
                "gc",
                "--remote",
                str(remote),
                "--keep-lockfile",
                str(seed.lockfile),
                "--grace",
                "0",
            ],
        ):
            codes.append(main(args))  # it must not crash, whatever it answers
            assert snapshot(base, skip=outside) == before, args
        if all(how == "tree" for how, _ in plan.values()):  # junk beside the objects: all three still work
            assert codes == [0, 0, 0], codes
    finally:
        shutil.rmtree(base)
