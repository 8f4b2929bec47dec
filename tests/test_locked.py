"""build --locked after the build, on plain values and a real temp store: outputs
that differ from the lock, and locked records no trusted key signed."""

from __future__ import annotations

from pathlib import Path

from lwrecipe.audit.locked import after_build
from lwrecipe.audit.lockfile import Lock
from lwrecipe.build.engine import Outcome
from lwrecipe.core.digests import Sha256
from lwrecipe.core.record import Blob, BuildRecord
from lwrecipe.remote.signing import generate, load_secret, sign
from lwrecipe.store.store import Store

KEY, OLD, NEW = Sha256("a" * 64), Sha256("b" * 64), Sha256("c" * 64)


def lock(tmp_path: Path, output_id: str) -> Lock:
    return Lock(tmp_path / "lockfile.toml", {"recipe": {"pkg": {"output_id": output_id}}})


def record(output_id: Sha256) -> BuildRecord:
    return BuildRecord(
        key=KEY, name="pkg", output_id=output_id, blob=Blob(sha256=Sha256("d" * 64), size=1), log=Sha256("e" * 64)
    )


def test_an_output_the_lock_names_otherwise_is_drift(tmp_path: Path) -> None:
    held = after_build(lock(tmp_path, OLD), Store(tmp_path / "none"), [Outcome("pkg", "built", KEY, NEW)], {})
    assert held.drift is not None and held.unsigned == ()
    assert held.drift.lines() == [
        "lockfile.toml: --locked: 1 difference(s) from the lockfile",
        f"pkg: output {OLD[:12]}… → {NEW[:12]}…",
    ]


def test_the_locked_output_unsigned_is_named(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache").ensure()
    store.put_record(record(OLD))
    held = after_build(lock(tmp_path, OLD), store, [Outcome("pkg", "cached", KEY, OLD)], {})
    assert held.drift is None
    assert held.unsigned == (f"pkg: output {OLD[:12]}…: record is not signed",)


def test_a_signed_locked_output_holds(tmp_path: Path) -> None:
    public = generate("alice", tmp_path / "alice.key")
    store = Store(tmp_path / "cache").ensure()
    store.put_record(sign(record(OLD), load_secret(tmp_path / "alice.key")))
    held = after_build(lock(tmp_path, OLD), store, [Outcome("pkg", "cached", KEY, OLD)], {"alice": public})
    assert held.drift is None and held.unsigned == ()


def test_a_lock_without_an_output_is_not_drift(tmp_path: Path) -> None:
    held = after_build(lock(tmp_path, ""), Store(tmp_path / "none"), [Outcome("pkg", "built", KEY, NEW)], {})
    assert held.drift is None
