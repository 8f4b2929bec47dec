"""Dependency resolution: missing recipes, cycles, stable topological order."""

from __future__ import annotations

import pytest

from lwrecipe.core.errors import GraphError
from lwrecipe.recipes.graph import find_cycle, load_graph, topological_order
from tests.conftest import simple_recipe


def test_order_is_topological_and_ties_break_by_name() -> None:
    deps = {"z": [], "a": [], "m": ["z", "a"], "b": ["a"], "top": ["m", "b"]}
    assert topological_order(deps) == ["a", "b", "z", "m", "top"]


def test_order_is_stable_whatever_the_insertion_order() -> None:
    deps = {"c": ["a"], "b": ["a"], "a": [], "d": ["c", "b"]}
    reordered = dict(reversed(list(deps.items())))
    assert topological_order(deps) == topological_order(reordered) == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    "deps,cycle",
    [
        ({"a": ["b"], "b": ["a"]}, ["a", "b", "a"]),
        ({"a": ["a"]}, ["a", "a"]),
        ({"x": ["a"], "a": ["b"], "b": ["c"], "c": ["a"]}, ["a", "b", "c", "a"]),
    ],
)
def test_cycles_are_reported_as_paths(deps, cycle) -> None:
    assert find_cycle(deps) == cycle
    with pytest.raises(GraphError, match=" -> ".join(cycle)):
        topological_order(deps)


def test_no_cycle() -> None:
    assert find_cycle({"a": ["b"], "b": []}) is None


def test_cycle_through_recipe_files(project, cli) -> None:
    project.recipe("a", simple_recipe("a", ["b"]))
    project.recipe("b", simple_recipe("b", ["c"]))
    project.recipe("c", simple_recipe("c", ["a"]))
    result = cli("plan", "a")
    assert result.code == 2
    assert result.err.strip() == "error: dependency cycle: a -> b -> c -> a"


def test_missing_dependency_names_who_asked(project, cli) -> None:
    project.recipe("app", simple_recipe("app", ["lib", "ghost"]))
    project.recipe("lib", simple_recipe("lib"))
    result = cli("plan", "recipes/app.toml")
    assert result.code == 2
    assert result.err.startswith("error: recipes/app.toml: build.depends[1]: no recipe 'ghost'")


def test_unknown_target_name(project, cli) -> None:
    result = cli("plan", "nothing")
    assert result.code == 2 and "no recipe named 'nothing'" in result.err


def test_closure_and_targets(project) -> None:
    project.recipe("base", simple_recipe("base"))
    project.recipe("lib", simple_recipe("lib", ["base"]))
    project.recipe("tool", simple_recipe("tool", ["base"]))
    project.recipe("app", simple_recipe("app", ["lib", "tool"]))
    graph = load_graph(["app"])
    assert graph.order == ("base", "lib", "tool", "app")
    assert graph.closure(["lib"]) == ["base", "lib"]
    assert graph.dependents("base") == ["lib", "tool"]


def test_diamond_loads_each_recipe_once(project) -> None:
    project.recipe("base", simple_recipe("base"))
    project.recipe("l", simple_recipe("l", ["base"]))
    project.recipe("r", simple_recipe("r", ["base"]))
    project.recipe("top", simple_recipe("top", ["l", "r"]))
    calls = []
    from lwrecipe.recipes.recipe import load_recipe

    def loader(path):
        calls.append(path.name)
        return load_recipe(path)

    load_graph(["top", "recipes/l.toml"], loader=loader)
    assert sorted(calls) == ["base.toml", "l.toml", "r.toml", "top.toml"]


def test_with_recipe_swaps_a_dependency_and_its_own_deps_are_the_projects(project, cli, tmp_path) -> None:
    """--with-recipe NAME=FILE: FILE is used wherever the graph names NAME; a
    substitute kept outside the project finds its dependencies in the project."""
    project.recipe("lib", simple_recipe("lib"))
    project.recipe("tool", simple_recipe("tool"))
    project.recipe("app", simple_recipe("app", ["tool", "lib"]))
    elsewhere = tmp_path.parent / f"{tmp_path.name}-standins"
    elsewhere.mkdir()
    (elsewhere / "tool.toml").write_text(simple_recipe("tool", ["lib"], script="echo stand-in"))
    result = cli("plan", "app", "--with-recipe", f"tool={elsewhere / 'tool.toml'}")
    assert result.code == 0, result.err
    rows = [line.split()[0] for line in result.out.splitlines()[1:]]
    assert rows[:3] == ["lib", "tool*", "app"]
    assert f"* tool: from {elsewhere / 'tool.toml'} (--with-recipe), not the project's recipe" in result.out
    graph = load_graph(["app"], substitutes={"tool": elsewhere / "tool.toml"})
    assert graph.recipes["tool"].path == elsewhere / "tool.toml" and graph.recipes["tool"].depends == ["lib"]
    assert set(graph.substitutions("app")) == {"tool"} and graph.substitutions("lib") == {}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tool", "--with-recipe tool: expected NAME=FILE"),
        ("tool=nowhere.toml", "--with-recipe tool=nowhere.toml: nowhere.toml: no such recipe file"),
        ("tool=recipes/lib.toml", "that recipe is named 'lib', not 'tool'"),
    ],
)
def test_a_bad_with_recipe_is_one_line(project, cli, spec, message) -> None:
    project.recipe("lib", simple_recipe("lib"))
    project.recipe("tool", simple_recipe("tool"))
    project.recipe("app", simple_recipe("app", ["tool", "lib"]))
    result = cli("plan", "app", "--with-recipe", spec)
    assert result.code == 2 and message in result.err and result.err.count("\n") == 1, result.err


def test_a_with_recipe_the_graph_does_not_have_is_said(project, cli) -> None:
    project.recipe("lib", simple_recipe("lib"))
    project.recipe("app", simple_recipe("app", ["lib"]))
    result = cli("plan", "app", "--with-recipe", "other=recipes/lib.toml")
    assert (
        result.code == 0
        and "warning: --with-recipe other: no recipe of the targets is or depends on 'other'" in result.err
    )


def test_locked_builds_refuse_stand_ins(project, cli) -> None:
    project.recipe("lib", simple_recipe("lib"))
    project.recipe("app", simple_recipe("app", ["lib"]))
    result = cli("build", "app", "--locked", "--with-recipe", "lib=recipes/lib.toml")
    assert result.code == 2 and "--locked with --with-recipe" in result.err
