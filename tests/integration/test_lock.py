"""Lockfile, `build --locked`, `audit`, `why` and SBOMs on real sandboxed builds.

Each mutation changes exactly one input — an in-repo patch, a script line, an
env value, a host tool's version, a dependency's output — and every command
must name exactly that input.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Project, run_subprocess

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]

APP_C = "line one\nline two\n"
PATCH = """--- a/app.txt
+++ b/app.txt
@@ -1,2 +1,2 @@
 line one
-line two
+line 2
"""
BASE_SCRIPT = 'mkdir -p "$LW_OUT"\nfakever > "$LW_OUT/tool"\necho "$FOO" > "$LW_OUT/foo"\ncp base.txt "$LW_OUT/"'


def base_recipe(script: str = BASE_SCRIPT, foo: str = "1") -> str:
    return (
        'schema = 1\n[package]\nname = "base"\nversion = "1.0"\nlicense = "MIT"\n'
        '[[sources]]\npath = "src/base.txt"\n'
        f'[build]\nhost_tools = ["mkdir", "cp", "fakever"]\nenv = {{ FOO = "{foo}" }}\n'
        f"script = '''\n{script}\n'''\n"
    )


APP = (
    'schema = 1\n[package]\nname = "app"\nversion = "2.0"\nlicense = "GPL-2.0-only"\n'
    '[[sources]]\npath = "src/app.txt"\n'
    '[[patches]]\nfile = "patches/app/0001-two.patch"\n'
    '[build]\ndepends = ["base"]\nhost_tools = ["mkdir", "cat"]\n'
    "script = '''\nmkdir -p \"$LW_OUT\"\ncat \"$LW_DEP_BASE/base.txt\" app.txt > \"$LW_OUT/app\"\n'''\n"
)


@pytest.fixture
def locked(project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    set_tool_version(bin_dir, "1.0")
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("LWRECIPE_TOOL_CACHE", str(tmp_path / "tools.json"))
    monkeypatch.setenv("LWRECIPE_CONFIG", str(tmp_path / "no-config.toml"))
    project.bin = bin_dir
    project.file("src/base.txt", "base\n")
    project.file("src/app.txt", APP_C)
    project.file("patches/app/0001-two.patch", PATCH)
    project.recipe("base", base_recipe())
    project.recipe("app", APP)
    assert lw(project, "build", "app").code == 0
    result = lw(project, "lock")
    assert result.code == 0, result.err
    return project


def set_tool_version(bin_dir: Path, version: str) -> None:
    tool = bin_dir / "fakever"
    tool.write_text(f'#!/bin/sh\necho "fakever {version}"\n')
    tool.chmod(0o755)


def lw(project: Project, *args: str):
    return run_subprocess(*args, cwd=project.root)


def test_lockfile_round_trip_is_byte_stable(locked) -> None:
    lock = (locked.root / "lockfile.toml").read_bytes()
    assert lw(locked, "lock").code == 0
    assert (locked.root / "lockfile.toml").read_bytes() == lock
    check = lw(locked, "lock", "--check")
    assert check.code == 0 and "up to date" in check.err
    text = lock.decode()
    assert "[recipe.app]" in text and 'output_id = ""' not in text  # both built, both pinned
    unsigned = lw(locked, "build", "app", "--locked")  # a release is made of signed records
    assert unsigned.code == 3 and "lockfile.toml: --locked: app: output" in unsigned.err
    assert "record is not signed" in unsigned.err
    audit = lw(locked, "audit")
    assert audit.code == 0, audit.err
    assert "source src/base.txt (in repo)" in audit.out and "tool fakever: fakever 1.0" in audit.out
    assert "flag: app: output" in audit.out and "record is not signed" in audit.out  # unsigned outputs flagged
    strict = lw(locked, "audit", "--strict")  # a release auditor's run: unsigned records fail it
    assert strict.code == 3 and "app: output" in strict.err and "record is not signed" in strict.err
    why = lw(locked, "why", "app")
    assert why.code == 0 and why.out.startswith("app: cached")
    key = locked.root / "builder.key"
    assert lw(locked, "key", "generate", "builder", "--out", str(key)).code == 0
    signed = run_subprocess(
        "cache", "push", str(locked.root / "remote"), cwd=locked.root, env={"LWRECIPE_SIGNING_KEY": str(key)}
    )  # push signs the records it sends
    assert signed.code == 0, signed.err
    relocked = run_subprocess("build", "app", "--locked", cwd=locked.root, env={"LWRECIPE_SIGNING_KEY": str(key)})
    assert relocked.code == 0, relocked.err


def expect_named(project: Project, change: str, culprit: str) -> None:
    """--locked and audit fail (exit 3) naming `change`; why reports `culprit` as a root cause."""
    locked_build = lw(project, "build", "app", "--locked")
    assert locked_build.code == 3, locked_build.err
    assert f"error: {change}" in locked_build.err
    assert "building" not in locked_build.err  # refused before anything ran
    audit = lw(project, "audit")
    assert audit.code == 3 and change in audit.err, audit.err
    check = lw(project, "lock", "--check")
    assert check.code == 3 and "out of date" in check.err
    why = lw(project, "why", "app")
    assert why.code == 0
    root_lines = [line.strip() for line in why.out.splitlines() if "← root cause" in line]
    assert root_lines and root_lines[0].startswith(f"{culprit}:"), why.out
    assert change in why.out
    doc = json.loads(lw(project, "why", "app", "--json").out)
    assert any(c["recipe"] == culprit for d in _walk(doc) for diff in d["differences"] for c in diff["changes"])


def _walk(doc: dict) -> list[dict]:
    return [doc] + [d for c in doc["causes"] for d in _walk(c)]


def test_one_byte_of_a_patch(locked) -> None:
    patch = locked.root / "patches" / "app" / "0001-two.patch"
    old = _sha(patch)
    patch.write_text(PATCH.replace("line 2", "line 3"))
    expect_named(locked, f"app: patches[0]: sha256 {old[:12]}… → {_sha(patch)[:12]}…", "app")


def test_a_line_of_the_build_script(locked) -> None:
    locked.recipe("base", base_recipe(BASE_SCRIPT.replace('echo "$FOO"', 'printf "%s\\n" "$FOO"')))
    expect_named(
        locked, 'base: script line 3: echo "$FOO" > "$LW_OUT/foo" → printf "%s\\n" "$FOO" > "$LW_OUT/foo"', "base"
    )


def test_an_env_value(locked) -> None:
    locked.recipe("base", base_recipe(foo="2"))
    expect_named(locked, "base: env FOO: 1 → 2", "base")


def test_a_host_tool_version(locked) -> None:
    set_tool_version(locked.bin, "2.0")
    expect_named(locked, "base: host tool fakever: fakever 1.0 → fakever 2.0", "base")


def test_a_dependency_output(locked) -> None:
    lock = (locked.root / "lockfile.toml").read_text()
    old_output = next(
        line for line in lock.split("[recipe.base]")[1].splitlines() if line.startswith("output_id")
    ).split('"')[1]
    # Same inputs, other bytes: rewrite base's record as if a rebuild had given another output.
    cache = locked.root / "cache"
    [record_path] = [p for p in (cache / "ac").iterdir() if json.loads(p.read_text())["name"] == "base"]
    record = json.loads(record_path.read_text())
    other = locked.root / "other"
    other.mkdir()
    (other / "base.txt").write_text("different\n")
    from lwrecipe.core.record import BuildRecord
    from lwrecipe.store.outputs import pack
    from lwrecipe.store.store import Store

    packed = pack(Store(cache), other, 315532800)
    record.update(output_id=packed.output_id, blob={**record["blob"], "sha256": packed.blob})
    Store(cache).put_record(BuildRecord.from_document(record, "ac"))
    expect_named(
        locked, f"app: dependency base: output {old_output[:12]}… → {packed.output_id[:12]}…", "base"
    )  # base's inputs did not change, its bytes did: the root cause is base


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sboms_validate_with_the_libraries_own_validators(locked, tmp_path) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    spdx = tmp_path / "app.spdx.json"
    assert lw(locked, "sbom", "app", "--format", "spdx-json", "--out", str(spdx)).code == 0
    document = parse_file(str(spdx))
    assert validate_full_spdx_document(document) == []
    names = {p.name for p in document.packages}
    assert {"app", "base", "0001-two.patch", "src/base.txt"} <= names
    cdx = lw(locked, "sbom", "app", "--format", "cyclonedx-json")
    assert cdx.code == 0
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(cdx.out) is None
    bom = json.loads(cdx.out)
    assert bom["metadata"]["component"]["name"] == "app"
    assert lw(locked, "sbom", "app", "--format", "cyclonedx-json").out == cdx.out  # same inputs, same bytes


def test_sboms_meet_ntia_minimum_elements_and_the_published_schema(locked, tmp_path) -> None:
    """SPDX passes NTIA's conformance checker (supplier, name, version, identifiers,
    relationships, author, timestamp); CycloneDX passes check-jsonschema against the
    published 1.5 schema (formats included). Both say what built each component:
    here the host tools, with their digests."""
    import subprocess
    import sys
    from importlib.resources import files

    bindir = Path(sys.executable).parent
    spdx = tmp_path / "app.spdx.json"
    assert lw(locked, "sbom", "app", "--format", "spdx-json", "--out", str(spdx)).code == 0
    ntia = subprocess.run([str(bindir / "ntia-checker"), "-r", "json", str(spdx)], capture_output=True, text=True)
    report = json.loads(ntia.stdout)
    assert report["isNtiaConformant"] is True, ntia.stdout
    doc = json.loads(spdx.read_text())
    assert all(p.get("supplier", "NOASSERTION") != "NOASSERTION" and p.get("versionInfo") for p in doc["packages"])
    tools = {p["SPDXID"]: p for p in doc["packages"] if p["SPDXID"].startswith("SPDXRef-Tool-base-")}
    assert {p["name"] for p in tools.values()} >= {"mkdir", "cp", "fakever"}
    assert all(p["checksums"][0]["algorithm"] == "SHA256" for p in tools.values())
    built_by = {
        (r["spdxElementId"], r["relatedSpdxElement"])
        for r in doc["relationships"]
        if r["relationshipType"] == "BUILD_TOOL_OF"
    }
    assert {(t, "SPDXRef-Recipe-base") for t in tools} <= built_by

    cdx = tmp_path / "app.cdx.json"
    assert lw(locked, "sbom", "app", "--format", "cyclonedx-json", "--out", str(cdx)).code == 0
    schema = files("cyclonedx.schema") / "_res" / "bom-1.5.SNAPSHOT.schema.json"
    check = subprocess.run(
        [str(bindir / "check-jsonschema"), "--schemafile", str(schema), str(cdx)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    bom = json.loads(cdx.read_text())
    assert all(c.get("supplier", {}).get("name") for c in bom["components"])
    [formula] = [f for f in bom["formulation"] if f["bom-ref"] == "formula:base"]
    assert {c["name"] for c in formula["components"]} >= {"mkdir", "cp", "fakever"}
    base = next(c for c in bom["components"] if c["bom-ref"] == "recipe:base")
    key = next(p["value"] for p in base["properties"] if p["name"] == "lwrecipe:key")
    assert formula["workflows"][0]["uid"] == key and formula["workflows"][0]["taskTypes"] == ["build"]
