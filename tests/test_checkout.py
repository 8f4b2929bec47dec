"""checkout without the command line: what it refuses, and a built output with its
dependency restored from a real cache."""

from __future__ import annotations

import shutil

import pytest

from lwrecipe.build.checkout import checkout
from lwrecipe.core.errors import UsageError
from lwrecipe.recipes.graph import load_graph
from tests.conftest import Project, simple_recipe


def test_an_unbuilt_target_is_refused(project: Project) -> None:
    path = project.recipe("a", simple_recipe("a"))
    with pytest.raises(UsageError, match=r"a: not built \(run `lwrecipe build a` first\)"):
        list(checkout(project.root / "cache", load_graph([str(path)]), project.root / "out", False))
    assert not (project.root / "out").exists()


def test_an_existing_destination_is_refused(project: Project) -> None:
    path = project.recipe("a", simple_recipe("a"))
    (project.root / "out").mkdir()
    with pytest.raises(UsageError, match="already exists"):
        list(checkout(project.root / "cache", load_graph([str(path)]), project.root / "out", False))


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_a_built_target_and_its_dependency_are_restored(project: Project, cli) -> None:
    project.recipe("a", simple_recipe("a", script="echo a > $LW_OUT/a.txt"))
    path = project.recipe("b", simple_recipe("b", ["a"], script="echo b > $LW_OUT/b.txt"))
    cache = project.root / "cache"
    assert cli("--cache", str(cache), "build", "b").code == 0
    done = list(checkout(cache, load_graph([str(path)]), project.root / "out", True))
    assert [(d.name, d.where) for d in done] == [("a", project.root / "out" / "a"), ("b", project.root / "out" / "b")]
    assert (project.root / "out" / "b" / "b.txt").read_text() == "b\n"
    assert (project.root / "out" / "a" / "a.txt").read_text() == "a\n"
