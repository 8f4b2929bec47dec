"""The real Linux/Wasm recipe set: loads, resolves, plans, and keys stably."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lwrecipe.build.plan import plan_recipe
from lwrecipe.recipes.graph import load_graph
from lwrecipe.recipes.recipe import load_recipe
from lwrecipe.recipes.schema import GitSource, SourcePatch, UrlSource
from tests.conftest import REPO, run_subprocess

COMPONENTS = ["busybox", "initramfs", "linux", "linux-headers", "llvm", "musl", "runtime"]
NAMES = sorted([*COMPONENTS, "buildenv"])  # the seven components and the environment they build on
LINUX_WASM_REV = "970e08b0d605e63e36a99d22596e8899a1dab8b5"


def test_the_recipe_set_is_exactly_the_seven_components_and_their_environment() -> None:
    assert sorted(p.stem for p in (REPO / "recipes").glob("*.toml")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_every_real_recipe_loads(name: str) -> None:
    recipe = load_recipe(REPO / "recipes" / f"{name}.toml")
    assert recipe.name == name
    for src in recipe.doc.sources:
        if isinstance(src, GitSource):
            assert src.rev == LINUX_WASM_REV and not src.unpack
    for patch in recipe.doc.patches:
        assert isinstance(patch, SourcePatch) and patch.source == "linux-wasm"


def upstream_file(path: str) -> str:
    """A file of linux-wasm at the pinned commit, from ../shared/upstream's clone."""
    import subprocess

    from tests.conftest import upstream

    return subprocess.run(
        [
            "git",
            "-c",
            "safe.directory=*",
            "--git-dir",
            str(upstream("linux-wasm.git")),
            "show",
            f"{LINUX_WASM_REV}:{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


UPSTREAM_DIRS = {"llvm": "llvm", "linux": "kernel", "musl": "musl", "busybox": "busybox"}


def test_versions_are_the_ones_upstreams_script_clones() -> None:
    """linux-wasm.sh clones llvmorg-18.1.2, v6.4.16, v1.2.5 and 1_36_1: each recipe's
    version and tarball are of that release; musl's pin is the real tarball's sha256."""
    import hashlib
    import re

    from tests.conftest import upstream

    script = upstream_file("linux-wasm.sh")
    tags = {c: t for t, c in re.findall(r'git clone -b (\S+) \$LW_GITFLAGS \S+ "\$LW_SRC/(\w+)"', script)}
    assert tags == {"llvm": "llvmorg-18.1.2", "kernel": "v6.4.16", "musl": "v1.2.5", "busybox": "1_36_1"}
    for name, component in UPSTREAM_DIRS.items():
        recipe = load_recipe(REPO / "recipes" / f"{name}.toml")
        version = tags[component].removeprefix("llvmorg-").removeprefix("v").replace("_", ".")
        [tarball] = [s for s in recipe.doc.sources if isinstance(s, UrlSource)]
        assert recipe.version == version and version in tarball.basename, (name, tarball.url)
    musl = [s for s in load_recipe(REPO / "recipes" / "musl.toml").doc.sources if isinstance(s, UrlSource)][0]
    real = upstream("sources/musl-1.2.5.tar.gz").read_bytes()
    assert musl.sha256 == hashlib.sha256(real).hexdigest()


@pytest.mark.parametrize("name", sorted(UPSTREAM_DIRS))
def test_patch_series_is_upstreams_in_upstreams_order(name: str) -> None:
    """Each recipe's patches are exactly the files linux-wasm.sh applies with `git am`
    to that component, in its order; every one exists at the pinned commit."""
    import re

    script = upstream_file("linux-wasm.sh")
    component = UPSTREAM_DIRS[name]
    theirs = re.findall(rf'git -C "\$LW_SRC/{component}" am < "\$LW_ROOT/(patches/\S+)"', script)
    ours = [p.path for p in load_recipe(REPO / "recipes" / f"{name}.toml").doc.patches]
    assert ours == theirs and theirs
    for path in theirs:
        assert upstream_file(path).startswith("From "), path  # a git format-patch file


def test_the_headers_patch_and_initramfs_files_are_upstreams() -> None:
    """linux-headers applies the headers patch upstream's build-busybox-kernel-headers
    step applies, from inside the headers directory as it does; initramfs takes the
    base archive and the init upstream's build-initramfs step takes."""
    script = upstream_file("linux-wasm.sh")
    headers = (REPO / "recipes" / "linux-headers.toml").read_text()
    patch = "patches/busybox-kernel-headers/busybox-kernel-headers-for-musl.patch"
    assert f'patch -p1 < "$LW_ROOT/{patch}"' in script and f"linux-wasm/{patch}" in headers
    assert 'cd "$LW_INSTALL/busybox-kernel-headers"' in script and 'patch -d "$LW_OUT/include" -p1' in headers
    initramfs = (REPO / "recipes" / "initramfs.toml").read_text()
    assert '"$LW_ROOT/patches/initramfs/initramfs-base.cpio"' in script and "initramfs-base.cpio" in initramfs
    assert '--file init="$upstream/init"' in initramfs and 'echo "./init" | cpio' in script


def _assert_valid_order(names: list[str]) -> None:
    graph = load_graph([str(REPO / "recipes" / "runtime.toml")])
    for i, name in enumerate(names):
        for dep in graph.deps(name):
            assert names.index(dep) < i, f"{dep} must come before {name}"


def test_plan_busybox_lists_its_closure_in_order(cli, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(REPO)
    result = cli("--cache", str(tmp_path / "cache"), "plan", "recipes/busybox.toml", "--json")
    assert result.code == 0, result.err
    names = [row["name"] for row in json.loads(result.out)]
    assert sorted(names) == ["buildenv", "busybox", "linux", "linux-headers", "llvm", "musl"]
    _assert_valid_order(names)


def test_plan_runtime_lists_all_seven(cli, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(REPO)
    result = cli("--cache", str(tmp_path / "cache"), "plan", "runtime")
    assert result.code == 0, result.err
    rows = [line.split()[0] for line in result.out.splitlines()[1:]]
    assert sorted(rows) == NAMES
    _assert_valid_order(rows)


def _copy_checkout(dest: Path) -> Path:
    shutil.copytree(REPO / "recipes", dest / "recipes")
    (dest / "lwrecipe").mkdir(parents=True)
    shutil.copy(REPO / "lwrecipe" / "initramfs.py", dest / "lwrecipe" / "initramfs.py")
    shutil.copy(REPO / "lwrecipe.toml", dest / "lwrecipe.toml")
    return dest


@pytest.mark.slow
def test_keys_equal_across_processes_and_checkouts(tmp_path) -> None:
    plans = []
    for where in (REPO, _copy_checkout(tmp_path / "a" / "copy"), _copy_checkout(tmp_path / "b")):
        result = run_subprocess("--cache", str(tmp_path / "cache"), "plan", "runtime", "--json", cwd=where)
        assert result.code == 0, result.err
        plans.append([(r["name"], r["key"], r["missing_tools"]) for r in json.loads(result.out)])
    assert plans[0] == plans[1] == plans[2]


def test_every_real_recipe_has_a_key_once_its_dependencies_are_known() -> None:
    """With stand-in output ids for the dependencies, each recipe keys (where its tools exist)
    and the keys are distinct."""
    graph = load_graph([str(REPO / "recipes" / "runtime.toml")])
    keys = {}
    for name in graph.order:
        recipe = graph.recipes[name]
        item = plan_recipe(recipe, {d: "0" * 64 for d in recipe.depends})
        if item.missing_tools:
            pytest.skip(f"{name}: host tools missing here: {item.missing_tools}")
        keys[name] = item.key
    assert len(set(keys.values())) == 8
    assert all(graph.recipes[n].environment == "buildenv" for n in COMPONENTS)


def test_committed_lockfile_matches_the_recipes() -> None:
    """lockfile.toml is re-locked whenever a recipe changes (host tools aside: they are the machine's)."""
    from lwrecipe.audit.lockfile import drift, read
    from lwrecipe.recipes.graph import load_graph
    from lwrecipe.store.store import file_sha256

    lock = read(REPO / "lockfile.toml")
    graph = load_graph([str(p) for p in sorted((REPO / "recipes").glob("*.toml"))])
    assert set(lock.recipes) == set(graph.recipes)
    for name, e in lock.recipes.items():
        assert file_sha256(REPO / e["recipe"]) == e["recipe_sha256"], name
    changes = [c.text() for c in drift(lock, graph, lambda key: None) if not c.field.startswith("host tool")]
    assert changes == []


def test_build_image_pins_a_package_for_every_host_tool() -> None:
    """docker/Dockerfile installs (at a pinned version) the Debian package of every tool the recipes run."""
    import re
    import tomllib

    from lwrecipe.build.plan import KEYED_IMPLICIT_TOOLS
    from lwrecipe.inputs.hosttools import DEBIAN_PACKAGES

    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    pinned = dict(re.findall(r"^\s+([a-z0-9.+-]+)=(\S+) \\$", dockerfile, re.M))
    assert "bubblewrap" in pinned and "python3" in pinned and all(pinned.values())
    essential = {"dash"}  # in every Debian image
    for path in sorted((REPO / "recipes").glob("*.toml")):
        tools = tomllib.loads(path.read_text())["build"].get("host_tools", []) + list(KEYED_IMPLICIT_TOOLS)
        for tool in tools + ["patch"]:
            package = DEBIAN_PACKAGES.get(tool)
            assert package is not None, f"{path.name}: host tool {tool} has no Debian package in DEBIAN_PACKAGES"
            assert package in pinned or package in essential, f"{path.name}: {tool} ({package}) not in the image"


@pytest.mark.slow
def test_the_committed_lockfile_pins_the_real_linux_wasm_tree_and_patches(tmp_path) -> None:
    """Every byte-level pin of the git source is in lockfile.toml: the tree sha256
    of the pinned commit and each patch's sha256, as the real clone gives them."""
    from lwrecipe.audit.lockfile import read
    from lwrecipe.core.digests import sha256_bytes
    from lwrecipe.inputs.gitsrc import fetch_tree, read_member
    from lwrecipe.inputs.mirrors import Mirrors
    from lwrecipe.store.store import Store
    from tests.conftest import upstream

    clone = tmp_path / "linux-wasm.git"
    shutil.copytree(upstream("linux-wasm.git"), clone, symlinks=True)
    url = "https://github.com/joelseverin/linux-wasm.git"
    tree = fetch_tree(
        Store(tmp_path / "c").ensure(), "linux-wasm", url, LINUX_WASM_REV, mirrors=Mirrors(git=((url, str(clone)),))
    )
    lock = read(REPO / "lockfile.toml")
    gits = [s for e in lock.recipes.values() for s in e["sources"] if s["kind"] == "git"]
    assert gits and all(s["tree_sha256"] == tree.sha256 for s in gits)
    patches = [p for e in lock.recipes.values() for p in e["patches"] if p["origin"] == "source"]
    assert len(patches) == 15
    for p in patches:
        assert p["sha256"] == sha256_bytes(read_member(tree.path, p["path"])), p["path"]


@pytest.mark.slow
def test_the_sboms_say_each_recipe_was_built_on_the_environment(tmp_path) -> None:
    """musl's SBOMs name what built it: the pinned environment (SPDX BUILD_TOOL_OF,
    CycloneDX formulation referencing the environment's component)."""
    spdx = json.loads(
        run_subprocess("--cache", str(tmp_path / "c"), "sbom", "musl", "--format", "spdx-json", cwd=REPO).out
    )
    assert {
        "spdxElementId": "SPDXRef-Recipe-buildenv",
        "relationshipType": "BUILD_TOOL_OF",
        "relatedSpdxElement": "SPDXRef-Recipe-musl",
    } in spdx["relationships"]
    assert not any(p["SPDXID"].startswith("SPDXRef-Tool-") for p in spdx["packages"])  # no host tool keyed
    suppliers = {p["name"]: p["supplier"] for p in spdx["packages"]}
    assert (
        suppliers["musl-1.2.5.tar.gz"] == "Organization: musl.libc.org"
        and suppliers["bash"] == "Organization: Debian"
        and suppliers["linux-wasm.git"] == "Organization: github.com/joelseverin"
    )
    cdx = json.loads(
        run_subprocess("--cache", str(tmp_path / "c"), "sbom", "musl", "--format", "cyclonedx-json", cwd=REPO).out
    )
    [formula] = [f for f in cdx["formulation"] if f["bom-ref"] == "formula:musl"]
    assert formula["workflows"][0]["resourceReferences"] == [{"ref": "recipe:buildenv"}]
