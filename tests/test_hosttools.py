"""Host tools are looked up and asked their version on the host, outside any sandbox:
what a recipe names must not make that run a project's file or flood lwrecipe."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lwrecipe.inputs import hosttools


@pytest.fixture(autouse=True)
def fresh_memo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LWRECIPE_TOOL_CACHE", str(tmp_path / "memo" / "host-tools.json"))
    monkeypatch.setattr(hosttools, "_MEMO", hosttools._Memo())
    hosttools._FOUND.clear()


def tool(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_a_relative_path_entry_never_finds_a_projects_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH="bin:/usr/bin" (or an empty entry) would find ./bin/evil in the project the
    user is in, and `evil --version` would run it on the host."""
    marker = tmp_path / "ran"
    tool(tmp_path / "bin", "evil", f"touch {marker}")
    tool(tmp_path, "evil2", f"touch {marker}")
    monkeypatch.chdir(tmp_path)
    assert hosttools.fingerprint("evil", "bin:/usr/bin") is None
    assert hosttools.fingerprint("evil2", ":/usr/bin") is None
    assert not marker.exists()
    assert hosttools.fingerprint("sh", "bin:/usr/bin:/bin") is not None


def test_a_tool_that_never_stops_talking_gives_its_first_line(tmp_path: Path) -> None:
    """`--version` output is read up to its first line, not gathered whole for 10 s."""
    tool(tmp_path / "bin", "chatty", "echo 'chatty 1.0'; exec yes")
    found = hosttools.fingerprint("chatty", str(tmp_path / "bin"))
    assert found is not None and found.version == "chatty 1.0"


def test_a_version_line_is_kept_to_printable_text(tmp_path: Path) -> None:
    tool(tmp_path / "bin", "bell", r"printf 'bell \033]0;title\007 2.0\n'")
    found = hosttools.fingerprint("bell", str(tmp_path / "bin"))
    assert found is not None and "\x1b" not in found.version and "\x07" not in found.version
    assert os.environ.get("LWRECIPE_TOOL_CACHE")
