"""SLSA provenance for every output: made by the build, signed with the record's
key, pushed and pulled beside the record, and verified here with the in-toto
project's own libraries, every digest in it checked against the store."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import run_subprocess
from tests.integration import test_build

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]

hello, served = test_build.hello, test_build.served  # the fixtures of its builds


def key_pair(project) -> tuple[Path, bytes]:
    path = project.root / "builder.key"
    gen = run_subprocess("key", "generate", "builder", "--out", str(path), cwd=project.root)
    assert gen.code == 0, gen.err
    return path, base64.b64decode(gen.out.strip().split(":", 1)[1])


def lw(project, *args: str, cache: str = "cache", env: dict | None = None):
    return run_subprocess("--cache", str(project.root / cache), *args, cwd=project.root, env=env)


def verified_statement(envelope: dict, public: bytes) -> dict:
    """The statement, after the in-toto libraries verified the envelope and parsed it."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from google.protobuf import json_format
    from in_toto.models.metadata import Envelope as InTotoEnvelope
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    key = SSlibKey.from_crypto(Ed25519PublicKey.from_public_bytes(public))
    assert set(Envelope.from_dict(copy.deepcopy(envelope)).verify([key], 1)) == {key.keyid}  # from_dict eats its input
    legacy = {"keyid": key.keyid, **key.to_dict()}  # in-toto's own verification takes its key format
    InTotoEnvelope.from_dict(copy.deepcopy(envelope)).verify_signature(legacy)  # raises when it does not verify
    stated = json.loads(base64.b64decode(envelope["payload"]))
    parsed = Statement.copy_from_pb(json_format.ParseDict(stated, statement_pb2.Statement()))
    parsed.validate()
    json_format.ParseDict(stated["predicate"], provenance_pb2.Provenance())  # SLSA Provenance v1's own schema
    return stated


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_provenance_is_signed_verifiable_and_every_digest_is_in_the_store(hello, tmp_path) -> None:
    secret, public = key_pair(hello)
    env = {"LWRECIPE_SIGNING_KEY": str(secret)}
    assert lw(hello, "build", "hello", env=env).code == 0
    out = tmp_path / "hello.intoto.json"
    made = lw(hello, "provenance", "hello", "--out", str(out), env=env)
    assert made.code == 0, made.err
    stated = verified_statement(json.loads(out.read_text()), public)
    cache = hello.root / "cache"
    [record] = [json.loads(p.read_text()) for p in (cache / "ac").iterdir()]
    assert stated["_type"] == "https://in-toto.io/Statement/v1"
    assert stated["predicateType"] == "https://slsa.dev/provenance/v1"
    assert {s["name"]: s["digest"]["sha256"] for s in stated["subject"]} == {
        "hello-1.0.tar": record["output_id"],
        "hello-1.0.tar.zst": record["blob"]["sha256"],
    }
    assert sha256_file(cache / "cas" / record["blob"]["sha256"]) == record["blob"]["sha256"]
    build = stated["predicate"]["buildDefinition"]
    assert build["externalParameters"]["recipe"]["sha256"] == sha256_file(hello.root / "recipes" / "hello.toml")
    assert build["externalParameters"]["key"] == record["key"]
    seen = set()
    for dep in build["resolvedDependencies"]:
        kind, digest = dep["annotations"]["kind"], dep["digest"]["sha256"]
        seen.add(kind)
        if kind == "url":
            assert dep["uri"].endswith("/hello-1.0.tar.gz") and sha256_file(cache / "sources" / digest) == digest
        elif kind == "patch":
            assert sha256_file(hello.root / dep["name"]) == digest
        elif kind == "host-tool":
            assert sha256_file(Path(dep["uri"])) == digest
    assert seen == {"url", "patch", "host-tool"}
    run = stated["predicate"]["runDetails"]
    assert run["builder"]["id"] == "urn:lwrecipe:builder:builder"
    assert run["metadata"]["invocationId"] == record["key"]
    started, finished = (
        datetime.fromisoformat(run["metadata"][t].replace("Z", "+00:00")) for t in ("startedOn", "finishedOn")
    )
    assert started.strftime("%Y-%m-%dT%H:%M:%SZ") == record["started"] and started <= finished
    [log] = run["byproducts"]
    assert sha256_file(cache / "cas" / log["digest"]["sha256"]) == record["log"]


def test_provenance_travels_with_the_record(hello, tmp_path) -> None:
    """Pushed beside the record (prov/<key>), pulled into the second cache, the
    same envelope; a tampered one is left behind, the record still pulled."""
    secret, public = key_pair(hello)
    env = {"LWRECIPE_SIGNING_KEY": str(secret)}
    remote = tmp_path / "remote"
    assert lw(hello, "build", "hello", "--push", "--remote", str(remote), env=env).code == 0
    [record] = [json.loads(p.read_text()) for p in (hello.root / "cache" / "ac").iterdir()]
    pushed = json.loads((remote / "prov" / record["key"]).read_text())
    verified_statement(pushed, public)
    trusting = {"LWRECIPE_TRUSTED_KEYS": "builder:" + base64.b64encode(public).decode()}
    pull = lw(hello, "cache", "pull", str(remote), "hello", cache="c2", env=trusting)
    assert pull.code == 0, pull.err
    again = lw(hello, "provenance", "hello", cache="c2", env=trusting)
    assert again.code == 0 and json.loads(again.out) == pushed
    forged = dict(
        pushed,
        payload=base64.b64encode(
            base64.b64decode(pushed["payload"]).replace(record["output_id"].encode(), b"0" * 64)
        ).decode(),
    )
    (remote / "prov" / record["key"]).write_text(json.dumps(forged))
    pull = lw(hello, "cache", "pull", str(remote), "hello", cache="c3", env=trusting)
    assert pull.code == 0 and "provenance" in pull.err and "refused" in pull.err, pull.err
    missing = lw(hello, "provenance", "hello", cache="c3", env=trusting)
    assert missing.code == 2 and "had no provenance for it" in missing.err, missing.err


def test_provenance_of_something_not_built_is_one_line(hello) -> None:
    result = lw(hello, "provenance", "hello")
    assert result.code == 2 and result.err.startswith("error: hello: its current inputs were not built"), result.err
