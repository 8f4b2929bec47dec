"""The build record (core/record.py): records written before the record types
existed (tests/records/) read back and write back byte for byte and still
verify; what is not a record is refused with one line saying why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lwrecipe.core.digests import Sha256
from lwrecipe.core.errors import IntegrityError
from lwrecipe.core.record import BuildRecord, NotARecord, Signature
from lwrecipe.remote import provenance
from lwrecipe.remote.signing import PublicKey, load_secret, parse_public, sign, valid_signers
from lwrecipe.store.store import Store

RECORDS = Path(__file__).parent / "records"
GOLDEN = ["app.json", "app-executor.json", "lib-legacy.json"]
SIGNERS = {"app.json": ["golden-a"], "app-executor.json": ["golden-a", "golden-b"], "lib-legacy.json": ["golden-b"]}
MINIMAL: dict[str, Any] = {
    "key": "a" * 64,
    "name": "x",
    "output_id": "b" * 64,
    "blob": {"sha256": "c" * 64, "size": 3},
    "log": "d" * 64,
}


def trusted() -> dict[str, PublicKey]:
    keys = [parse_public((RECORDS / f"{n}.pub").read_text()) for n in ("golden-a", "golden-b")]
    return {k.name: k for k in keys}


def golden(name: str) -> BuildRecord:
    return BuildRecord.from_json((RECORDS / name).read_bytes(), name)


@pytest.mark.parametrize("name", GOLDEN)
def test_a_golden_record_reads_and_writes_back_byte_for_byte(name: str) -> None:
    assert golden(name).to_json() == (RECORDS / name).read_bytes()


@pytest.mark.parametrize("name", GOLDEN)
def test_a_golden_record_is_signed_by_its_keys(name: str) -> None:
    assert valid_signers(golden(name), trusted()) == SIGNERS[name]


def test_signing_today_makes_the_signature_a_golden_record_carries(tmp_path: Path) -> None:
    key = tmp_path / "golden-a.key"
    key.write_bytes((RECORDS / "golden-a.key").read_bytes())
    key.chmod(0o600)
    app = golden("app.json")
    assert sign(app.with_signatures(()), load_secret(key)).to_json() == app.to_json()


def test_the_parts_of_a_record_are_typed() -> None:
    record = golden("app-executor.json")
    assert record.blob.size == 124 and record.executor is not None and record.executor.cached_result is False
    assert record.inputs is not None and record.inputs.sources[0].kind == "url" and record.inputs.deps["lib"]
    assert record.substituted["lib"].recipe == "/home/dev/lib.toml" and record.sandboxed
    assert [s.key for s in record.signatures] == ["golden-a", "golden-b"]
    assert golden("lib-legacy.json").signatures[0].pub is None


def test_a_field_is_written_back_only_when_it_was_there() -> None:
    minimal = BuildRecord.from_document(MINIMAL, "r")
    assert json.loads(minimal.to_json()) == MINIMAL
    nulls = BuildRecord.from_document({**MINIMAL, "environment": None, "duration_s": 1}, "r")
    assert b'"environment":null' in nulls.to_json() and b'"duration_s":1,' in nulls.to_json()
    assert b'"duration_s":1.0' in BuildRecord.from_document({**MINIMAL, "duration_s": 1.0}, "r").to_json()
    assert b"signatures" not in minimal.signed_bytes()
    assert minimal.with_signatures((Signature(key="k", sig="s"),)).signed_bytes() == minimal.signed_bytes()


def test_an_entry_that_is_not_a_signature_counts_for_nothing() -> None:
    entries = ["junk", {"key": "k"}, {"key": "k", "sig": "s", "pub": "p"}, 3]
    record = BuildRecord.from_document({**MINIMAL, "signatures": entries}, "r")
    assert record.signatures == (Signature(key="k", sig="s", pub="p"),)


@pytest.mark.parametrize(
    "document, message",
    [
        ([1], "r: not a build record; refused"),
        ({**MINIMAL, "run": "rm -rf /"}, r"r: record has fields a build record does not have \(run\); refused"),
        ({**MINIMAL, "blob": {"sha256": "c" * 64, "size": 1, "x": 1}}, r"does not have \(blob.x\)"),
        ({k: v for k, v in MINIMAL.items() if k != "log"}, "r: not a build record: log: missing; refused"),
        ({**MINIMAL, "output_id": "B" * 64}, "not a build record: output_id: string should match pattern"),
        ({**MINIMAL, "blob": {"sha256": "c" * 64, "size": -1}}, "not a build record: blob.size: input should be"),
        ({**MINIMAL, "blob": {"sha256": "c" * 64, "size": True}}, "blob.size: input should be a valid integer"),
        ({**MINIMAL, "substituted": {"x": {"recipe": "r"}}}, "substituted.x.recipe_sha256: missing"),
        ({**MINIMAL, "signatures": "abc"}, "signatures: input should be a valid tuple"),
    ],
)
def test_what_is_not_a_record_is_refused_in_one_line(document: object, message: str) -> None:
    with pytest.raises(NotARecord, match=message) as exc:
        BuildRecord.from_document(document, "r")
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("data", [b"\x00garbage", b'{"key": 1, "key": 2}', b" " * 100])
def test_bytes_that_are_not_a_record_are_refused(data: bytes) -> None:
    with pytest.raises(NotARecord, match="r: not a build record"):
        BuildRecord.from_json(data, "r", limit=50 if len(data) == 100 else 1000)


def test_a_local_entry_that_is_not_a_whole_record_is_quarantined(tmp_path: Path) -> None:
    """Before BuildRecord, an ac/ entry naming its key and an output id passed, and
    whatever read its blob or log later failed with a KeyError."""
    store = Store(tmp_path / "cache").ensure()
    key = Sha256("a" * 64)
    store.path("ac", key).write_bytes(json.dumps({"key": key, "output_id": "b" * 64}).encode())
    assert store.read_record(key) is None
    assert not store.path("ac", key).exists() and list((store.root / "quarantine").iterdir())
    store.put_record(BuildRecord.from_document(MINIMAL, "r"))
    assert store.read_record(key) == BuildRecord.from_document(MINIMAL, "r")


def test_a_record_without_what_provenance_states_has_none() -> None:
    """Before, a record from before the key document was kept failed with a KeyError."""
    with pytest.raises(IntegrityError, match=r"x: its record \(aaaaaaaaaaaa\) is too old to state provenance"):
        provenance.statement(BuildRecord.from_document(MINIMAL, "r"))
