"""why --remote without the command line: this machine's inputs against a real
directory remote's records, and whether a build here would use the same one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lwrecipe.audit.why import Why, against_remotes
from lwrecipe.core.record import BuildRecord
from lwrecipe.recipes.graph import load_graph
from lwrecipe.remote.config import RemoteSpec, Settings
from lwrecipe.remote.remote import Remotes
from lwrecipe.remote.signing import PublicKey, generate, load_secret, sign
from lwrecipe.store.store import Store
from tests.conftest import Project, simple_recipe

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


@pytest.fixture
def pushed(project: Project, cli) -> Path:
    project.recipe("a", simple_recipe("a", script="echo a > $LW_OUT/a.txt"))
    remote = project.root / "remote"
    assert cli("--cache", str(project.root / "cache"), "build", "a", "--push", "--remote", str(remote)).code == 0
    return remote


def ask(project: Project, remote: Path, verify: bool, ask_use: bool, trusted: dict[str, PublicKey] | None = None):
    graph = load_graph([str(project.root / "recipes" / "a.toml")])
    store = Store(project.root / "cache")
    settings = Settings((RemoteSpec(url=f"file://{remote}", name="team"),), None, trusted or {}, min_signers=2)
    with Remotes.open(store, settings, verify_signatures=verify) as remotes:
        return list(against_remotes(Why(graph, store, None), remotes, "a", ask_use))


def test_the_same_inputs_used_here(project: Project, pushed: Path) -> None:
    [found] = ask(project, pushed, verify=False, ask_use=True)
    assert found.remote == "team" and found.label == "remote team" and found.same and found.unused is None


def test_the_same_inputs_refused_here_say_why(project: Project, pushed: Path, tmp_path: Path) -> None:
    """Signed by one trusted key where the remote needs two: compared, not used."""
    public = generate("alice", tmp_path / "alice.key")
    [path] = (pushed / "ac").iterdir()
    path.chmod(0o644)
    path.write_bytes(
        sign(BuildRecord.from_json(path.read_bytes(), str(path)), load_secret(tmp_path / "alice.key")).to_json()
    )
    [found] = ask(project, pushed, verify=True, ask_use=True, trusted={"alice": public})
    assert found.same and found.unused is not None, found
    assert "is signed by 1 of the 2 trusted keys required (alice)" in found.unused
    [quiet] = ask(project, pushed, verify=True, ask_use=False, trusted={"alice": public})
    assert quiet.same and quiet.unused is None


def test_changed_inputs_are_not_the_same(project: Project, pushed: Path) -> None:
    project.recipe("a", simple_recipe("a", script="echo changed > $LW_OUT/a.txt"))
    [found] = ask(project, pushed, verify=False, ask_use=True)
    assert not found.same and found.unused is None and found.reason.against
