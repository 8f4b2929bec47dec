"""lock without the command line: entries made again from recipes and a temp cache,
whether the file changes, which recipes a partial relock keeps, and the keys a
set of lockfiles pins (the roots of `cache gc --remote`), and the locked recipes
as the checkout has them (what `audit` compares)."""

from __future__ import annotations

import pytest

from lwrecipe.audit.lockfile import locked_graph, locked_keys, read, write
from lwrecipe.audit.relock import relock
from lwrecipe.core.errors import UsageError
from lwrecipe.recipes.graph import load_graph
from tests.conftest import Project, simple_recipe


def test_a_first_lock_is_new_then_current(project: Project) -> None:
    path = project.recipe("a", simple_recipe("a"))
    lockfile, cache = project.root / "lockfile.toml", project.root / "cache"
    made = relock(load_graph([str(path)]), cache, lockfile, keep_others=False)
    assert made.old is None and not made.current and list(made.entries) == ["a"]
    write(lockfile, made.text)
    again = relock(load_graph([str(path)]), cache, lockfile, keep_others=False)
    assert again.current and again.text == made.text


def test_a_changed_recipe_is_named(project: Project) -> None:
    a = project.recipe("a", simple_recipe("a"))
    b = project.recipe("b", simple_recipe("b"))
    lockfile, cache = project.root / "lockfile.toml", project.root / "cache"
    write(lockfile, relock(load_graph([str(a), str(b)]), cache, lockfile, keep_others=False).text)
    project.recipe("b", simple_recipe("b", script="echo changed"))
    made = relock(load_graph([str(a), str(b)]), cache, lockfile, keep_others=False)
    assert not made.current and made.changed() == ["b"]


def test_a_partial_relock_keeps_the_other_recipes(project: Project) -> None:
    a = project.recipe("a", simple_recipe("a"))
    b = project.recipe("b", simple_recipe("b"))
    lockfile, cache = project.root / "lockfile.toml", project.root / "cache"
    write(lockfile, relock(load_graph([str(a), str(b)]), cache, lockfile, keep_others=False).text)
    assert sorted(relock(load_graph([str(a)]), cache, lockfile, keep_others=True).entries) == ["a", "b"]
    assert sorted(relock(load_graph([str(a)]), cache, lockfile, keep_others=False).entries) == ["a"]


def test_the_keys_of_several_lockfiles(project: Project) -> None:
    a = project.recipe("a", simple_recipe("a"))
    b = project.recipe("b", simple_recipe("b"))
    first, second, cache = project.root / "one.toml", project.root / "two.toml", project.root / "cache"
    keys = set()
    for path, recipe in ((first, a), (second, b)):
        made = relock(load_graph([str(recipe)]), cache, path, keep_others=False)
        write(path, made.text)
        keys |= {e["key"] for e in made.entries.values()}
    assert len(keys) == 2 and locked_keys([str(first), str(second)]) == keys
    with pytest.raises(UsageError, match="missing.toml: no such lockfile"):
        locked_keys([str(first), "missing.toml"])


def test_the_locked_recipes_as_the_checkout_has_them(project: Project) -> None:
    a = project.recipe("a", simple_recipe("a"))
    b = project.recipe("b", simple_recipe("b"))
    lockfile, cache = project.root / "lockfile.toml", project.root / "cache"
    write(lockfile, relock(load_graph([str(a), str(b)]), cache, lockfile, keep_others=False).text)
    warned: list[str] = []
    graph = locked_graph(read(lockfile), project.root, warned.append)
    assert graph is not None and sorted(graph.recipes) == ["a", "b"] and warned == []
    b.unlink()
    graph = locked_graph(read(lockfile), project.root, warned.append)
    assert graph is not None and sorted(graph.recipes) == ["a"]
    a.write_text("schema = 1\n[package]\n")
    assert locked_graph(read(lockfile), project.root, warned.append) is None
    assert len(warned) == 1 and warned[0].startswith("recipes cannot be loaded, inputs not compared: ")
    a.unlink()
    assert locked_graph(read(lockfile), project.root, warned.append) is None and len(warned) == 1
