"""A REAPI server as a remote cache: BuildGrid 0.4.4 (from PyPI) with disk CAS and
an action cache, no database, started on 127.0.0.1 by the test. Push, pull,
substitution and plan over grpc://; ByteStream for a blob larger than one batch;
a tampered CAS blob and an action result for another key refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration import test_remote
from tests.integration.test_remote import Machine, ok
from tests.servers import buildgrid_server

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]

project, alice, bob = test_remote.project, test_remote.alice, test_remote.bob


@pytest.fixture
def buildgrid(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """grpc://127.0.0.1:<port>/main and the directory of its disk CAS."""
    with buildgrid_server(tmp_path / "buildgrid") as served:
        yield served


def big_recipe(project) -> None:
    """An output larger than one batch request: it goes by ByteStream both ways."""
    project.file("src/big.txt", "big\n")
    project.recipe(
        "big",
        'schema = 1\n[package]\nname = "big"\nversion = "1.0"\nlicense = "MIT"\n'
        '[[sources]]\npath = "src/big.txt"\n'
        '[build]\ndepends = ["app"]\nhost_tools = ["mkdir", "head", "cp"]\nscript = \'\'\'\n'
        'mkdir -p "$LW_OUT"\nhead -c 3000000 /dev/urandom > "$LW_OUT/noise"\ncp big.txt "$LW_OUT/"\n'
        "'''\n",
    )


def test_push_pull_and_substitution_over_reapi(project, alice, bob, buildgrid) -> None:
    url, _ = buildgrid
    big_recipe(project)
    ok(alice.run("build", "big"))
    assert "3 pushed" in ok(alice.run("cache", "push", url))
    assert "0 pushed, 3 already" in ok(alice.run("cache", "push", url))
    plan = bob.run("plan", "big", "--remote", url)
    assert plan.code == 0 and plan.out.count("remote") >= 1, plan.out
    err = ok(bob.run("build", "big", "--remote", url))
    assert "0 built" in err, err
    mine, theirs = alice.records(), bob.records()
    assert {n: r["output_id"] for n, r in mine.items()} == {n: r["output_id"] for n, r in theirs.items()}
    assert theirs["big"]["blob"]["size"] > (1 << 20)  # read back by ByteStream
    carol = Machine(project, "carol")
    carol.trusted.append(alice.public)
    assert "3 pulled" in ok(carol.run("cache", "pull", url, "big"))
    assert "0 corrupt quarantined" in ok(carol.run("cache", "verify"))


def test_a_tampered_blob_and_a_result_for_another_key_are_refused(project, alice, bob, buildgrid) -> None:
    url, cas = buildgrid
    ok(alice.run("build", "app", "--push", "--remote", url))
    record = alice.records()["app"]
    blob = record["blob"]["sha256"]
    stored = cas / "cas" / "objects" / blob[:2] / blob[2:]  # BuildGrid's disk storage layout
    stored.write_bytes(stored.read_bytes()[:-3] + b"xyz")
    pull = bob.run("cache", "pull", url, "app")
    assert pull.code == 3 and f"cas/{blob[:12]}: served bytes with another sha256; refused" in pull.err, pull.err
    assert not (bob.cache / "cas" / blob).exists()
    # app's record, stored as the action result of base's key
    from lwrecipe.remote.backends.reapi import ReapiBackend
    from lwrecipe.remote.config import RemoteSpec

    backend = ReapiBackend(RemoteSpec(url=url, name="bg"))
    try:
        base = alice.records()["base"]
        backend._put_entry("ac", base["key"], json.dumps(record).encode())
    finally:
        backend.close()
    carol = Machine(project, "carol")
    carol.trusted.append(alice.public)
    refused = carol.run("cache", "pull", url, "base")
    assert refused.code == 3 and f"record is for key {record['key'][:12]}, not {base['key'][:12]}" in refused.err, (
        refused.err
    )


def test_grpcs_is_checked_against_the_system_trust(project, alice, tmp_path, monkeypatch) -> None:
    """A REAPI server with a certificate of a private CA: refused until the CA is
    trusted as for https (SSL_CERT_FILE), then pushed to and pulled from."""
    from tests.servers import self_signed

    cert, key = self_signed(tmp_path)
    with buildgrid_server(tmp_path / "buildgrid", tls=(cert, key)) as (url, _):
        assert url.startswith("grpcs://")
        ok(alice.run("build", "app"))
        refused = alice.run("cache", "push", url)
        assert refused.code != 0 and "UNAVAILABLE" in refused.err and "Traceback" not in refused.err, refused.err
        assert all(line.startswith(("error: ", "0 pushed")) for line in refused.err.splitlines()), refused.err
        alice.env["SSL_CERT_FILE"] = str(cert)
        assert "2 pushed" in ok(alice.run("cache", "push", url))
        carol = Machine(project, "carol")
        carol.trusted.append(alice.public)
        carol.env["SSL_CERT_FILE"] = str(cert)
        assert "2 pulled" in ok(carol.run("cache", "pull", url, "app"))
