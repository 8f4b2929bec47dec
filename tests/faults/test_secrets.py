"""Secrets — a remote's auth token and the signing key — never appear in output,
error messages, logs, build records, the lockfile or anything else written."""

from __future__ import annotations

from pathlib import Path

import pytest
import zstandard

from tests.conftest import Project, run_subprocess
from tests.servers import fault_server

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]

TOKEN = "Bearer tok-9f8e7d6c5b4a"


def readable(path: Path) -> bytes:
    data = path.read_bytes()
    if data[:4] == b"\x28\xb5\x2f\xfd":  # zstd: logs and outputs are stored compressed
        try:
            return zstandard.ZstdDecompressor().decompressobj().decompress(data)
        except zstandard.ZstdError:
            return data
    return data


def test_secrets_stay_secret(project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "user-config.toml"  # the team remote and its token are the user's own settings
    monkeypatch.setenv("LWRECIPE_CONFIG", str(config))
    key = tmp_path / "ci.key"
    gen = run_subprocess("key", "generate", "ci", "--out", str(key), cwd=project.root)
    assert gen.code == 0
    secret = key.read_text().split(":", 1)[1].strip()
    project.file("src/a.txt", "a\n")
    project.recipe(
        "a",
        (
            'schema = 1\n[package]\nname = "a"\nversion = "1"\nlicense = "MIT"\n'
            '[[sources]]\npath = "src/a.txt"\n'
            '[build]\nhost_tools = ["cp", "mkdir", "env"]\n'
            'script = \'mkdir -p "$LW_OUT" && cp a.txt "$LW_OUT/" && env | sort > /dev/stderr || true\'\n'
        ),
    )
    project.recipe(
        "broken",
        (
            'schema = 1\n[package]\nname = "broken"\nversion = "1"\nlicense = "MIT"\n'
            "[build]\nhost_tools = [\"env\"]\nscript = 'env; exit 4'\n"
        ),
    )
    env = {"TEAM_TOKEN": TOKEN, "LWRECIPE_SIGNING_KEY": str(key)}
    outputs: list[str] = []
    with fault_server() as server:
        config.write_text(
            f'[[remote]]\nname = "team"\nurl = "{server.url("")}"\npush = true\nauth_env = "TEAM_TOKEN"\n'
        )
        for args in (
            ["build", "a"],
            ["-v", "cache", "push", "team"],
            ["build", "broken"],
            ["lock", "--offline"],
            ["audit"],
            ["why", "a"],
            ["plan", "a"],
            ["sbom", "a", "--format", "spdx-json"],
        ):
            result = run_subprocess("--cache", str(project.root / "cache"), *args, cwd=project.root, env=env)
            outputs += [result.out, result.err]
        assert any(h.get("Authorization") == TOKEN for h in server.seen_headers)
        for path in list(server.files):
            server.behaviour[f"HEAD {path}"] = ["401"] * 10
            server.behaviour[path] = ["401"] * 10
        denied = run_subprocess(
            "--cache", str(project.root / "fresh"), "cache", "pull", "team", "a", cwd=project.root, env=env
        )
        assert denied.code != 0 and "HTTP 401" in denied.err
        outputs += [denied.out, denied.err]
        served = b"".join(server.files.values())
    for text in outputs:
        assert TOKEN not in text and "tok-9f8e7d6c5b4a" not in text and secret not in text
    for path in [p for p in project.root.rglob("*") if p.is_file() and p != key]:
        data = readable(path)
        assert b"tok-9f8e7d6c5b4a" not in data, path
        assert secret.encode() not in data, path
    assert b"tok-9f8e7d6c5b4a" not in served and secret.encode() not in served
