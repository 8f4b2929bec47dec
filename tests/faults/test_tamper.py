"""One flipped byte in each area of the store, as an auditor would try it: `audit`
and `cache verify` must exit 3, name the file with both digests, and keep the
evidence in cache/quarantine/ — nothing is deleted."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.conftest import Project, run_subprocess

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]


def tarball() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("pkg-1.0/hello.txt")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"hello\n"))
    return buf.getvalue()


class Release:
    def __init__(self, project: Project, mirror: Path, sha: str) -> None:
        self.project, self.mirror, self.sha = project, mirror, sha
        self.cache = project.root / "cache"

    def run(self, *args: str):
        return run_subprocess(
            "--cache", str(self.cache), *args, cwd=self.project.root, env={"LWRECIPE_MIRRORS": str(self.mirror)}
        )

    def record(self) -> dict:
        [record] = [json.loads(p.read_text()) for p in (self.cache / "ac").iterdir()]
        return record

    def quarantined(self) -> dict[str, bytes]:
        directory = self.cache / "quarantine"
        return {p.name: p.read_bytes() for p in sorted(directory.iterdir())} if directory.is_dir() else {}


@pytest.fixture
def release(project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Release:
    monkeypatch.setenv("LWRECIPE_CONFIG", str(tmp_path / "no-config.toml"))
    data = tarball()
    sha = hashlib.sha256(data).hexdigest()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / sha).write_bytes(data)
    project.recipe(
        "pkg",
        f'''schema = 1
[package]
name = "pkg"
version = "1.0"
license = "MIT"
[[sources]]
url = "https://example.invalid/pkg-1.0.tar.gz"
sha256 = "{sha}"
strip = 1
[build]
host_tools = ["cp", "mkdir"]
script = 'mkdir -p "$LW_OUT" && cp hello.txt "$LW_OUT/"'
''',
    )
    rel = Release(project, mirror, sha)
    assert rel.run("build", "pkg").code == 0
    assert rel.run("lock").code == 0
    assert rel.run("audit").code == 0
    return rel


def flip(path: Path, at: int = 10) -> bytes:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    return bytes(data)


def test_a_flipped_source_byte_fails_audit_and_is_kept_in_quarantine(release: Release) -> None:
    flipped = flip(release.cache / "sources" / release.sha)
    actual = hashlib.sha256(flipped).hexdigest()
    result = release.run("audit")
    assert result.code == 3, result.err
    assert (
        f"pkg: sources[0] (https://example.invalid/pkg-1.0.tar.gz): sources/{release.sha}: sha256 {actual}, "
        f"expected {release.sha}; moved to {release.cache / 'quarantine'}" in result.err
    )
    kept = release.quarantined()
    [name] = [n for n in kept if not n.endswith(".note")]
    assert kept[name] == flipped and name.endswith(f"-sources-{release.sha}")
    note = json.loads(kept[name + ".note"])
    assert note["was"] == f"sources/{release.sha}" and actual in note["reason"]


def test_a_flipped_output_byte_fails_audit(release: Release) -> None:
    blob = release.record()["blob"]["sha256"]
    flip(release.cache / "cas" / blob, at=40)
    result = release.run("audit")
    assert result.code == 3 and f"pkg: output {release.record()['output_id'][:12]}…: cas/{blob}: sha256 " in result.err
    assert any(n.endswith(f"-cas-{blob}") for n in release.quarantined())


def test_a_flipped_log_byte_and_a_broken_record_fail_audit(release: Release) -> None:
    record = release.record()
    flip(release.cache / "cas" / record["log"], at=5)
    result = release.run("audit")
    assert result.code == 3 and f"its build log: cas/{record['log']}: sha256 " in result.err, result.err
    ac = release.cache / "ac" / record["key"]
    ac.chmod(0o644)
    ac.write_text(ac.read_text().replace(record["output_id"], "0" * 64))
    result = release.run("audit")
    assert result.code == 3 and "(the cache built it differently)" in result.err
    ac.write_text("{not json")
    result = release.run("audit")
    assert result.code == 3 and f"ac/{record['key']}: not a build record for its key" in result.err
    assert any(n.endswith(f"-ac-{record['key']}") for n in release.quarantined())


def test_quick_audit_only_looks_and_says_so(release: Release) -> None:
    flip(release.cache / "sources" / release.sha)
    result = release.run("audit", "--quick")
    assert result.code == 0 and "(quick: the cache was only looked in, nothing re-hashed)" in result.err
    assert release.quarantined() == {}


def test_cache_verify_exits_3_keeps_the_evidence_and_repairs(release: Release) -> None:
    assert release.run("cache", "verify").code == 0
    flipped = flip(release.cache / "sources" / release.sha)
    result = release.run("cache", "verify", "--repair")
    assert result.code == 3 and f"quarantined sources/{release.sha} -> quarantine/" in result.out, result.out
    assert "1 corrupt quarantined" in result.err and flipped in release.quarantined().values()
    assert f"repaired sources/{release.sha} from file://{release.mirror}/{release.sha}" in result.out, result.out
    assert (release.cache / "sources" / release.sha).read_bytes() == (release.mirror / release.sha).read_bytes()
    assert release.run("cache", "verify").code == 0
    flip(release.cache / "cas" / release.record()["log"], at=5)
    repaired = release.run("cache", "verify", "--repair")
    assert (
        repaired.code == 3 and f"not repaired: ac/{release.record()['key']}: no remote is configured" in repaired.out
    ), repaired.out


def test_cache_verify_quarantines_a_broken_record_and_a_flipped_output(release: Release) -> None:
    record = release.record()
    flip(release.cache / "cas" / record["blob"]["sha256"], at=40)
    ac = release.cache / "ac" / record["key"]
    ac.chmod(0o644)
    ac.write_text(ac.read_text().replace('"key"', '"kee"', 1))
    result = release.run("cache", "verify")
    assert result.code == 3, result.err
    assert f"quarantined cas/{record['blob']['sha256']} -> quarantine/" in result.out
    assert f"quarantined ac/{record['key']} -> quarantine/" in result.out and "not a build record" in result.out
    kept = release.quarantined()
    assert any(n.endswith(f"-ac-{record['key']}") for n in kept) and not ac.exists()
    stats = {line.split()[0]: line.split()[1] for line in release.run("cache", "stats").out.splitlines()}
    assert stats["quarantine"] == str(len(kept))  # two entries and their notes
