"""provenance without the command line, on a real cache: the envelope a build made,
one made again from the record, and what it refuses."""

from __future__ import annotations

import json
import shutil

import pytest

from lwrecipe.build.attestation import attestation
from lwrecipe.build.plan import Planned, plan_graph
from lwrecipe.build.status import StatusOracle
from lwrecipe.core.errors import UsageError
from lwrecipe.recipes.graph import load_graph
from lwrecipe.store.store import Store
from tests.conftest import Project, simple_recipe

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


def planned(project: Project) -> Planned:
    graph = load_graph([str(project.root / "recipes" / "a.toml")])
    [item] = plan_graph(graph, StatusOracle(project.root / "cache").output_id)
    return item


def no_secret() -> None:
    raise AssertionError("the key is asked for only when provenance is made now")


def test_the_built_provenance_and_one_made_again(project: Project, cli) -> None:
    project.recipe("a", simple_recipe("a", script="echo a > $LW_OUT/a.txt"))
    assert cli("--cache", str(project.root / "cache"), "build", "a").code == 0
    store, item = Store(project.root / "cache"), planned(project)
    made = attestation(store, item, no_secret)
    assert made.name == "a" and made.output_id == store.output_id(item.key)
    assert json.loads(made.envelope)["payloadType"] == "application/vnd.in-toto+json"
    (store.root / "provenance" / str(item.key)).unlink()
    again = attestation(store, item, lambda: None)
    assert json.loads(again.envelope)["payload"] == json.loads(made.envelope)["payload"]


def test_an_unbuilt_or_pulled_output_is_refused(project: Project, cli) -> None:
    project.recipe("a", simple_recipe("a", script="echo a > $LW_OUT/a.txt"))
    with pytest.raises(UsageError, match="a: its current inputs were not built in"):
        attestation(Store(project.root / "cache"), planned(project), no_secret)
    assert cli("--cache", str(project.root / "cache"), "build", "a").code == 0
    store, item = Store(project.root / "cache"), planned(project)
    assert item.key is not None
    (store.root / "provenance" / item.key).unlink()
    store.mark_pulled(item.key, "team")
    with pytest.raises(UsageError, match="a: its output was pulled from team, which had no provenance for it"):
        attestation(store, item, no_secret)
