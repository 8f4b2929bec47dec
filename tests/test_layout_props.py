"""Property tests of the host-side lay-out and checkout (issue #31): generated trees
of files, directories and links (tests/hostile_trees.py) laid out as a sequence of
path sources with generated, overlapping destinations, restored from an output, or
unpacked from a hostile archive: nothing outside the target directory changes."""

from __future__ import annotations

import contextlib
import io
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwrecipe.core.digests import Sha256
from lwrecipe.core.errors import LwrecipeError
from lwrecipe.inputs.sources import Fetch, lay_out
from lwrecipe.recipes.recipe import Recipe
from lwrecipe.recipes.schema import RecipeDoc
from lwrecipe.store.archive import extract_canonical
from lwrecipe.store.outputs import pack, restore
from lwrecipe.store.store import Store
from tests.hostile_trees import DECOY, NAMES, Tree, make_decoy, materialise, snapshot, trees

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

dests = st.one_of(
    st.just("."),
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join),
    st.sampled_from(NAMES).map(lambda n: f"../{n}"),
)


def _recipe(root: Path, dests_: list[str]) -> Recipe:
    doc = RecipeDoc.model_validate(
        {
            "schema": 1,
            "package": {"name": "p", "version": "1", "license": "MIT"},
            "sources": [{"path": f"p{i}", "dest": d} for i, d in enumerate(dests_)],
            "build": {"script": "true"},
        }
    )
    return Recipe(root / "recipes" / "p.toml", root, "recipes/p.toml", doc, Sha256("0" * 64))


@PROPS
@given(st.lists(st.tuples(trees, dests), min_size=1, max_size=3))
@pytest.mark.slow
def test_laying_out_generated_trees_changes_nothing_outside_the_build_directory(
    sources: list[tuple[Tree, str]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp)
        decoy = make_decoy(top / "decoy")
        for i, (tree, _) in enumerate(sources):
            materialise(tree, top / "project" / f"p{i}", decoy)
        build = top / "build"
        before = snapshot(top, skip=(build,))
        try:
            lay_out(_recipe(top / "project", [d for _, d in sources]), Fetch(), build / "src")
        except LwrecipeError as exc:
            assert "\n" not in str(exc)
        assert snapshot(top, skip=(build,)) == before


@PROPS
@given(trees)
@pytest.mark.slow
def test_checkout_of_a_generated_output_keeps_its_links_as_links(tree: Tree) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp)
        decoy = make_decoy(top / "decoy")
        src = materialise(tree, top / "tree", decoy)
        store = Store(top / "cache").ensure()
        packed = pack(store, src, 0)
        dest = top / "dest"
        before = snapshot(top, skip=(dest, top / "cache"))
        restore(store, packed.blob, packed.output_id, dest)
        assert snapshot(top, skip=(dest, top / "cache")) == before
        got, want = snapshot(dest), snapshot(src)
        assert {k: v for k, v in got.items() if v[0] == "link"} == {k: v for k, v in want.items() if v[0] == "link"}
        assert {k: v[2] for k, v in got.items() if v[0] == "file"} == {
            k: v[2] for k, v in want.items() if v[0] == "file"
        }


members = st.lists(
    st.tuples(
        st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join),
        st.sampled_from(["file", "dir", "link", "hardlink"]),
        st.one_of(
            st.sampled_from(NAMES), st.just(f"{DECOY}/victim-dir"), st.just(f"{DECOY}/victim.txt"), st.just("../../..")
        ),
    ),
    max_size=8,
)


def _archive(entries: list[tuple[str, str, str]], decoy: Path) -> bytes:
    """A tar stream in any order, with duplicates, links first and entries through them:
    what a forged output from a remote may hold (its hash matches its forged record)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, kind, target in entries:
            info = tarfile.TarInfo(name)
            target = target.replace(DECOY, str(decoy))
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "file":
                info.size, info.mode = 5, 0o644
                tar.addfile(info, io.BytesIO(b"owned"))
            else:
                info.type = tarfile.SYMTYPE if kind == "link" else tarfile.LNKTYPE
                info.linkname = target
                tar.addfile(info)
    return out.getvalue()


@PROPS
@given(members)
def test_a_hostile_output_archive_changes_nothing_outside_the_checkout(entries: list[tuple[str, str, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp)
        decoy = make_decoy(top / "decoy")
        dest = top / "dest"
        dest.mkdir()
        before = snapshot(top, skip=(dest,))
        data = io.BytesIO(_archive(entries, decoy))
        with contextlib.suppress(LwrecipeError, OSError):  # restore turns these into one IntegrityError
            extract_canonical(data.read, dest)
        assert snapshot(top, skip=(dest,)) == before
