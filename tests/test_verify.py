"""cache verify on a real temp store: what it quarantines, which build keys a
repair pulls again, and what a repair says when it cannot get an entry back."""

from __future__ import annotations

import hashlib
from pathlib import Path

from lwrecipe.build.repair import Repair, pull_again, repair_sources
from lwrecipe.core.digests import Sha256
from lwrecipe.core.record import Blob, BuildRecord
from lwrecipe.inputs.fetch import make_client
from lwrecipe.inputs.mirrors import Mirrors
from lwrecipe.recipes.graph import Graph
from lwrecipe.store.store import Store
from lwrecipe.store.verify import git_trees, keys_to_pull, verify_cache


def built(store: Store, name: str, payload: bytes) -> tuple[str, str, str]:
    blob = store.put_bytes("cas", payload).name
    log = store.put_bytes("cas", b"log of " + payload).name
    key = hashlib.sha256(name.encode()).hexdigest()
    output_id = hashlib.sha256(payload).hexdigest()
    store.put_record(
        BuildRecord(
            key=Sha256(key),
            name=name,
            output_id=Sha256(output_id),
            blob=Blob(sha256=Sha256(blob), size=len(payload)),
            log=Sha256(log),
        )
    )
    return key, blob, log


def corrupt(path: Path) -> None:
    path.chmod(0o644)
    path.write_bytes(b"not what it is named by")


def test_a_clean_store_verifies(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache").ensure()
    built(store, "a", b"a" * 100)
    found = verify_cache(store)
    assert found.corrupt == 0 and found.report.checked == 3 and found.wrong == ()


def test_a_missing_store_verifies_nothing(tmp_path: Path) -> None:
    found = verify_cache(Store(tmp_path / "none"))
    assert found.corrupt == 0 and found.report.checked == 0


def test_a_corrupt_log_names_the_key_that_holds_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache").ensure()
    key, _, log = built(store, "a", b"a" * 100)
    other, _, _ = built(store, "b", b"b" * 100)
    corrupt(store.path("cas", log))
    found = verify_cache(store)
    assert [(q.area, q.name) for q in found.report.quarantined] == [("cas", log)]
    assert found.corrupt == 1
    assert keys_to_pull(store, found.report.quarantined) == {key}
    assert other not in keys_to_pull(store, found.report.quarantined)


def test_a_corrupt_record_is_its_own_key(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache").ensure()
    key, _, _ = built(store, "a", b"a" * 100)
    corrupt(store.path("ac", key))
    found = verify_cache(store)
    assert [(q.area, q.name) for q in found.report.quarantined] == [("ac", key)]
    assert keys_to_pull(store, found.report.quarantined) == {key}


def test_git_trees_reads_only_revision_refs(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache").ensure()
    refs = store.root / "refs"
    refs.mkdir(exist_ok=True)
    rev, tree = "a" * 40, "b" * 64
    (refs / f"git-{rev}").write_text(tree + "\n")
    (refs / f"git-{rev}.commit").write_text("commit object")
    assert git_trees(store) == {tree: rev}


def test_without_remotes_nothing_is_pulled_and_it_says_why() -> None:
    said: list[Repair] = []
    pull_again(None, {"c" * 64, "a" * 64}, said.append)
    assert [r.line() for r in said] == [
        f"not repaired: ac/{'a' * 64}: no remote is configured to pull it from",
        f"not repaired: ac/{'c' * 64}: no remote is configured to pull it from",
    ]


def test_a_source_no_recipe_names_is_not_fetched(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache").ensure()
    sha = store.put_bytes("sources", b"an old source").name
    corrupt(store.path("sources", sha))
    found = verify_cache(store)
    said: list[Repair] = []
    with make_client() as client:
        graph = Graph(recipes={}, order=(), targets=())
        repair_sources(store, graph, tmp_path, Mirrors(), client, found.report.quarantined, said.append)
    assert [r.line() for r in said] == [f"not repaired: sources/{sha}: no recipe of {tmp_path} names it"]
