"""Build keys: every keyed input changes the key; nothing else does."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from lwrecipe.build.plan import plan_recipe
from lwrecipe.core.digests import canonical_json
from lwrecipe.recipes.keys import KEY_FORMAT, KeyInputs, PatchPin, SourcePin, ToolPin, build_key
from lwrecipe.recipes.recipe import load_recipe

A, B, C = "a" * 64, "b" * 64, "c" * 64
BASE = KeyInputs(
    name="demo",
    version="1.0",
    sources=(SourcePin("url", A, 1, ".", True),),
    patches=(PatchPin("file", B, 1),),
    script="make",
    env=(("CFLAGS", "-O2"),),
    tools=(ToolPin("make", C, "GNU Make 4.3"),),
    platform="x86_64-linux",
    source_date_epoch=315532800,
    deps=(("lib", A),),
)
GOLDEN = "19e7c7b1c4766ecb03065e107fba9083d70142fbc4d19a3dbff20c4c5dfeb0c9"


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": ["é", {"d": 2, "c": 3}]}) == '{"a":["é",{"c":3,"d":2}],"b":1}'.encode()


def test_golden_key() -> None:
    """If this changes, every cache entry in the world is invalidated: bump KEY_FORMAT."""
    assert KEY_FORMAT == 1
    assert build_key(BASE) == GOLDEN


CHANGES = {
    "name": dict(name="demo2"),
    "version": dict(version="1.1"),
    "source sha256": dict(sources=(SourcePin("url", B, 1, ".", True),)),
    "source strip": dict(sources=(SourcePin("url", A, 0, ".", True),)),
    "source dest": dict(sources=(SourcePin("url", A, 1, "sub", True),)),
    "source unpack": dict(sources=(SourcePin("url", A, 1, ".", False),)),
    "source added": dict(sources=(SourcePin("url", A, 1, ".", True), SourcePin("git", "f" * 40, 0, "g", True))),
    "patch sha256": dict(patches=(PatchPin("file", C, 1),)),
    "patch strip": dict(patches=(PatchPin("file", B, 0),)),
    "patch order": dict(patches=(PatchPin("file", C, 1), PatchPin("file", B, 1))),
    "script": dict(script="make V=1"),
    "env value": dict(env=(("CFLAGS", "-O3"),)),
    "env name": dict(env=(("CPPFLAGS", "-O2"),)),
    "tool sha256": dict(tools=(ToolPin("make", A, "GNU Make 4.3"),)),
    "tool version": dict(tools=(ToolPin("make", C, "GNU Make 4.4"),)),
    "platform": dict(platform="aarch64-linux"),
    "source date epoch": dict(source_date_epoch=0),
    "dependency output": dict(deps=(("lib", B),)),
    "dependency added": dict(deps=(("lib", A), ("zlib", A))),
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_each_keyed_input_changes_the_key(change) -> None:
    assert build_key(dataclasses.replace(BASE, **change)) != build_key(BASE)


RECIPE = """schema = 1
[package]
name = "demo"
version = "1.0"
license = "{license}"
description = "{description}"
[[sources]]
url = "{url}"
mirrors = [{mirrors}]
sha256 = "{sha}"
strip = 1
[[sources]]
path = "src"
dest = "local"
[[patches]]
file = "patches/demo/0001.patch"
[build]
depends = ["lib"]
script = "make"
"""
DEFAULTS = dict(license="MIT", description="a demo", url="https://example.org/d.tar.gz", mirrors="", sha=A)


def _key(project, **fields) -> str:
    project.recipe("demo", RECIPE.format(**{**DEFAULTS, **fields}))
    return plan_recipe(load_recipe(project.root / "recipes" / "demo.toml"), {"lib": C}).key


@pytest.fixture
def keyed(project):
    project.file("src/main.c", "int main(void) { return 0; }\n")
    project.file("patches/demo/0001.patch", "--- a/x\n+++ b/x\n")
    return project


@pytest.mark.parametrize(
    "field,value",
    [
        ("url", "https://mirror.example.net/other-name.tar.gz"),
        ("mirrors", '"https://m1.example.org/d.tar.gz", "https://m2.example.org/d.tar.gz"'),
        ("description", "another description"),
        ("license", "GPL-2.0-only"),
    ],
)
def test_unkeyed_fields_do_not_change_the_key(keyed, field, value) -> None:
    assert _key(keyed, **{field: value}) == _key(keyed)


def test_in_repo_inputs_change_the_key(keyed) -> None:
    before = _key(keyed)
    keyed.file("patches/demo/0001.patch", "--- a/x\n+++ b/y\n")
    after_patch = _key(keyed)
    keyed.file("src/main.c", "int main(void) { return 1; }\n")
    after_source = _key(keyed)
    (keyed.root / "src" / "main.c").chmod(0o755)
    after_mode = _key(keyed)
    assert len({before, after_patch, after_source, after_mode}) == 4


def test_in_repo_file_metadata_other_than_exec_bit_is_ignored(keyed) -> None:
    before = _key(keyed)
    main = keyed.root / "src" / "main.c"
    main.chmod(0o600)
    import os

    os.utime(main, (1, 1))
    assert _key(keyed) == before


def test_key_does_not_depend_on_checkout_location(keyed, tmp_path) -> None:
    before = _key(keyed)
    moved = tmp_path / "elsewhere" / "checkout"
    shutil.copytree(keyed.root, moved, symlinks=True)
    recipe = load_recipe(moved / "recipes" / "demo.toml")
    assert recipe.root == moved
    assert plan_recipe(recipe, {"lib": C}).key == before


def test_missing_tool_means_no_key(keyed) -> None:
    keyed.recipe(
        "demo",
        RECIPE.format(**DEFAULTS).replace('script = "make"', 'script = "make"\nhost_tools = ["no-such-tool-xyz"]'),
    )
    item = plan_recipe(load_recipe(keyed.root / "recipes" / "demo.toml"), {"lib": C})
    assert item.key is None and item.missing_tools == ("no-such-tool-xyz",)


def test_unknown_dependency_output_means_no_key(keyed) -> None:
    keyed.recipe("demo", RECIPE.format(**DEFAULTS))
    item = plan_recipe(load_recipe(keyed.root / "recipes" / "demo.toml"), {"lib": None})
    assert item.key is None and item.waiting_on == ("lib",)
