"""shell's sandbox without the command line: a dependency built first and bound,
a command run as the build would run, and a missing kept failure refused."""

from __future__ import annotations

import shutil

import pytest

from lwrecipe.build.plan import Planned
from lwrecipe.build.shell import build_sandbox
from lwrecipe.core.errors import UsageError
from lwrecipe.inputs.entries import UnpackLimits
from lwrecipe.inputs.sources import Fetch
from lwrecipe.recipes.graph import load_graph
from lwrecipe.store.store import Store
from tests.conftest import Project, simple_recipe

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


def nothing_to_fetch(items: list[Planned]) -> Fetch:
    return Fetch()


def test_a_dependency_is_built_and_bound(project: Project) -> None:
    project.recipe("a", simple_recipe("a", script="echo a > $LW_OUT/a.txt"))
    path = project.recipe("b", simple_recipe("b", ["a"]))
    store = Store(project.root / "cache").ensure()
    said: list[str] = []
    graph = load_graph([str(path)])
    with build_sandbox(store, graph, nothing_to_fetch, UnpackLimits, False, "b", said.append) as sandbox:
        assert sandbox.run(["/bin/sh", "-c", 'read x < /deps/a/a.txt && test "$x" = a']) == 0
        assert sandbox.run(["/bin/sh", "-c", "exit 7"]) == 7
    assert "a: built" in said, said
    assert not list((store.root / "tmp").glob("shell-b-*"))


def test_no_kept_failure_is_refused(project: Project) -> None:
    path = project.recipe("a", simple_recipe("a"))
    store = Store(project.root / "cache").ensure()
    with (
        pytest.raises(UsageError, match=r"a: no failed build is kept \(run `lwrecipe build a.toml --keep-failed`\)"),
        build_sandbox(store, load_graph([str(path)]), nothing_to_fetch, UnpackLimits, True, "a.toml", print),
    ):
        pass
