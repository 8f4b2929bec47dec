"""challenge --rebuild without the command line: a fresh build here of the closure,
on a real cache, named by output id or by why it was not rebuilt."""

from __future__ import annotations

import shutil

import pytest

from lwrecipe.audit.challenge import REBUILD, challenge, rebuild_outputs
from lwrecipe.build.plan import Planned
from lwrecipe.core.digests import is_sha256
from lwrecipe.inputs.sources import Fetch
from lwrecipe.recipes.graph import load_graph
from lwrecipe.store.store import Store
from tests.conftest import Project, simple_recipe

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


def nothing_to_fetch(items: list[Planned]) -> Fetch:
    return Fetch()


def test_a_rebuild_names_each_output_of_the_closure(project: Project, cli) -> None:
    project.recipe("a", simple_recipe("a", script="echo a > $LW_OUT/a.txt"))
    path = project.recipe("b", simple_recipe("b", ["a"], script="echo b > $LW_OUT/b.txt"))
    cache = project.root / "cache"
    assert cli("--cache", str(cache), "build", "b").code == 0
    graph, store = load_graph([str(path)]), Store(cache)
    events: list[tuple[str, str]] = []
    rebuilt = rebuild_outputs(graph, store, nothing_to_fetch, lambda name, state: events.append((name, state)))
    assert sorted(rebuilt) == ["a", "b"] and all(is_sha256(v) for v in rebuilt.values())
    assert ("b", "checked") in events
    [_, verdict] = challenge(graph, store, None, rebuilt)
    assert verdict.name == "b" and verdict.views[REBUILD] == rebuilt["b"] and verdict.status.startswith("agree")


def test_a_recipe_never_built_here_is_built_and_named(project: Project) -> None:
    path = project.recipe("a", simple_recipe("a", script="echo a > $LW_OUT/a.txt"))
    rebuilt = rebuild_outputs(
        load_graph([str(path)]), Store(project.root / "cache"), nothing_to_fetch, lambda n, s: None
    )
    assert list(rebuilt) == ["a"] and is_sha256(rebuilt["a"])
