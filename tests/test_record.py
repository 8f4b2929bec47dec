"""The build record's JSON form: records written before the record types existed
(tests/records/) read back and write back byte for byte, and still verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lwrecipe.core.digests import canonical_json
from lwrecipe.remote.remote import parse_record
from lwrecipe.remote.signing import PublicKey, parse_public, valid_signers

RECORDS = Path(__file__).parent / "records"
GOLDEN = ["app.json", "app-executor.json", "lib-legacy.json"]
SIGNERS = {"app.json": ["golden-a"], "app-executor.json": ["golden-a", "golden-b"], "lib-legacy.json": ["golden-b"]}


def trusted() -> dict[str, PublicKey]:
    keys = [parse_public((RECORDS / f"{n}.pub").read_text()) for n in ("golden-a", "golden-b")]
    return {k.name: k for k in keys}


@pytest.mark.parametrize("name", GOLDEN)
def test_a_golden_record_reads_and_writes_back_byte_for_byte(name: str) -> None:
    data = (RECORDS / name).read_bytes()
    record = parse_record(data, json.loads(data)["key"], name)
    assert canonical_json(record) == data


@pytest.mark.parametrize("name", GOLDEN)
def test_a_golden_record_is_signed_by_its_keys(name: str) -> None:
    record = json.loads((RECORDS / name).read_bytes())
    assert valid_signers(record, trusted()) == SIGNERS[name]
