"""lock without the command line: entries made again from recipes and a temp cache,
whether the file changes, and which recipes a partial relock keeps."""

from __future__ import annotations

from lwrecipe.audit.lockfile import write
from lwrecipe.audit.relock import relock
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
