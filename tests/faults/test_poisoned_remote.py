"""A directory remote whose writer is hostile: one document — a build record
(ac/<key>), a co-signature (sig/<key>/<signer>), a provenance (prov/<key>) or the
names index (names/<recipe>) — replaced by something deep, huge, not text, not
JSON or of the wrong shape. Whatever it is, no client tracebacks: `build --remote`
warns and builds here, `cache pull` exits 3 with one line naming the document,
`challenge` and `why --remote` report the remote as refusing or empty."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from tests.conftest import Project, Result
from tests.faults.test_malformed import DEEP, run_capped, sparse
from tests.integration.test_remote import Machine

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]

RECIPE = """schema = 1
[package]
name = "pkg"
version = "1.0"
license = "MIT"
[build]
host_tools = ["mkdir", "cp"]
script = 'mkdir -p "$LW_OUT" && echo hi > "$LW_OUT/hi"'
"""


class Poisoned:
    """alice built pkg and pushed it to `remote`; bob (trusting alice and carol, who
    never signs) reads the remote with a fresh cache each time."""

    def __init__(self, project: Project, tmp_path: Path) -> None:
        self.project, self.tmp_path = project, tmp_path
        self.remote = tmp_path / "remote"
        alice = Machine(project, "alice")
        assert alice.run("build", "pkg", "--push", "--remote", str(self.remote)).code == 0
        [self.key] = [p.name for p in (self.remote / "ac").iterdir()]
        self.record = json.loads((self.remote / "ac" / self.key).read_text())
        self.bob = Machine(project, "bob")
        carol = Machine(project, "carol")
        self.bob.trusted += [alice.public, carol.public]
        carol_raw = base64.b64decode(carol.public.partition(":")[2])
        self.carol_sig = self.remote / "sig" / self.key / hashlib.sha256(carol_raw).hexdigest()
        self.runs = 0

    def path(self, kind: str) -> Path:
        return {
            "ac": self.remote / "ac" / self.key,
            "sig": self.carol_sig,
            "prov": self.remote / "prov" / self.key,
            "names": self.remote / "names" / "pkg",
        }[kind]

    def run(self, *args: str, min_signers: int = 1) -> Result:
        self.runs += 1
        config = self.tmp_path / f"bob-{self.runs}.toml"
        config.write_text(f"min_signers = {min_signers}\n")
        cache = self.tmp_path / f"bob-cache-{self.runs}"
        env = {
            "LWRECIPE_SIGNING_KEY": str(self.bob.key),
            "LWRECIPE_TRUSTED_KEYS": " ".join(self.bob.trusted),
            "LWRECIPE_CONFIG": str(config),
        }
        return run_capped("--cache", str(cache), *args, cwd=self.project.root, env=env)


@pytest.fixture
def poisoned(project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Poisoned:
    monkeypatch.setenv("LWRECIPE_CONFIG", str(tmp_path / "no-user-config.toml"))
    for var in ("LWRECIPE_REMOTES", "LWRECIPE_SIGNING_KEY", "LWRECIPE_TRUSTED_KEYS"):
        monkeypatch.delenv(var, raising=False)
    project.recipe("pkg", RECIPE)
    return Poisoned(project, tmp_path)


def record_with(record: dict, **fields: object) -> bytes:
    return json.dumps({**record, **fields}).encode()


# name -> (documents it applies to, how to make the bytes from the genuine record)
POISONS = {
    "deep arrays": lambda r: b"[" * 2000 + b"]" * 2000,  # small enough for a co-signature's 4 KiB
    "deep objects": lambda r: b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "lone surrogate": lambda r: record_with(r, version="\ud800", name="pkg\ud800"),
    "escaped lone surrogate in a key": lambda r: json.dumps(r).replace('"version"', '"\\udc00version"', 1).encode(),
    "invalid UTF-8": lambda r: json.dumps(r).encode().replace(b'"1.0"', b'"\xff\xfe"'),
    "not JSON": lambda r: b"{not json",
    "a number": lambda r: b"5",
    "a list": lambda r: b"[1, 2]",
    "5000-digit integer": lambda r: record_with(r).replace(b'"size": ', b'"size": ' + b"9" * 5000 + b', "x": '),
    "NaN": lambda r: record_with(r).replace(b'"size": ', b'"size": NaN, "x": '),
    "duplicate key": lambda r: record_with(r)[:-1] + b', "output_id": "' + b"0" * 64 + b'"}',
    "signatures a number": lambda r: record_with(r, signatures=5),
    "signatures of lists": lambda r: record_with(r, signatures=[[1]]),
    "blob a list": lambda r: record_with(r, blob=[]),
    "inputs a string": lambda r: record_with(r, inputs="x"),
    "keys a number": lambda r: b'{"name": "pkg", "keys": 5}',
    "keys of numbers": lambda r: b'{"name": "pkg", "keys": [1, {"key": 7}]}',
    "payload a list": lambda r: json.dumps(
        {"payload": base64.b64encode(b"[1]").decode(), "payloadType": "application/vnd.in-toto+json", "signatures": []}
    ).encode(),
    "payload deep": lambda r: json.dumps(
        {
            "payload": base64.b64encode(b"[" * DEEP).decode(),
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [],
        }
    ).encode(),
    "subject a number": lambda r: json.dumps(
        {
            "payload": base64.b64encode(
                json.dumps({"predicateType": "https://slsa.dev/provenance/v1", "subject": 5}).encode()
            ).decode(),
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [],
        }
    ).encode(),
    "digest a list": lambda r: json.dumps(
        {
            "payload": base64.b64encode(
                json.dumps(
                    {
                        "predicateType": "https://slsa.dev/provenance/v1",
                        "subject": [{"digest": [1]}, {"digest": {"sha256": [1]}}],
                    }
                ).encode()
            ).decode(),
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [],
        }
    ).encode(),
}
GENERIC = [
    "deep arrays",
    "deep objects",
    "lone surrogate",
    "escaped lone surrogate in a key",
    "invalid UTF-8",
    "not JSON",
    "a number",
    "a list",
    "5000-digit integer",
    "NaN",
    "duplicate key",
]
CASES = (
    [(kind, poison) for kind in ("ac", "sig", "prov", "names") for poison in GENERIC]
    + [("ac", p) for p in ("signatures a number", "signatures of lists", "blob a list", "inputs a string")]
    + [("sig", p) for p in ("signatures a number",)]
    + [("names", p) for p in ("keys a number", "keys of numbers")]
    + [("prov", p) for p in ("payload a list", "payload deep", "subject a number", "digest a list")]
)


def assert_no_traceback(result: Result) -> None:
    assert "Traceback" not in result.err and "Error:" not in result.err.replace("error:", ""), result.err[-3000:]


@pytest.mark.parametrize(("kind", "poison"), CASES)
def test_a_poisoned_remote_document_is_a_warning_or_exit_3_never_a_traceback(
    poisoned: Poisoned, kind: str, poison: str
) -> None:
    path = poisoned.path(kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(POISONS[poison](poisoned.record))
    remote = str(poisoned.remote)
    signers = 2 if kind == "sig" else 1  # co-signatures are read only when the record's own fall short
    refused = kind in ("ac", "sig")  # the record is not used; a bad provenance or index only costs itself

    build = poisoned.run("build", "pkg", "--remote", remote, min_signers=signers)
    assert_no_traceback(build)
    assert build.code == 0, build.err[-3000:]
    assert ("1 built" if refused else "1 pulled") in build.err, build.err[-3000:]
    if kind in ("ac", "prov"):
        assert f"{kind}/{poisoned.key[:12]}" in build.err, build.err[-3000:]

    pull = poisoned.run("cache", "pull", remote, "pkg", min_signers=signers)
    assert_no_traceback(pull)
    assert pull.code == (3 if refused else 0), pull.err[-3000:]

    challenge = poisoned.run("challenge", "pkg", "--remote", remote, min_signers=signers)
    assert_no_traceback(challenge)
    assert challenge.code in (0, 3), challenge.err[-3000:]

    for extra in ([], ["--no-verify-signatures"]):
        why = poisoned.run("why", "pkg", "--remote", remote, *extra, min_signers=signers)
        assert_no_traceback(why)
        assert why.code == 0, why.err[-3000:]


def test_a_record_larger_than_the_cap_is_refused_by_the_bytes_read(poisoned: Poisoned) -> None:
    sparse(poisoned.path("ac"), b"{", 200 << 20)
    result = poisoned.run("cache", "pull", str(poisoned.remote), "pkg")
    assert_no_traceback(result)
    assert result.code == 3 and f"ac/{poisoned.key}: larger than" in result.err, result.err
