"""Terminal control sequences a build prints, or a recipe carries, never reach
the user's terminal raw: not in a failure's tail, `build -v`, `log`,
`log --follow`, nor in an error or warning that quotes a recipe's content."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Project, script_recipe

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]

# a clipboard write (OSC 52), a window title (OSC 0), cursor moves and a screen
# clear, a carriage return that hides what came before, a C1 CSI, a bell, a
# right-to-left override
HOSTILE = (
    "\\033]52;c;SGVsbG8=\\007 \\033]0;pwned\\007 \\033[2J\\033[H\\033[5A hidden\\rshown "
    "\\302\\233"
    "31m \\a \\342\\200\\256txt.exe"
)
RAW = [b"\x1b", b"\x07", b"\r", b"\xc2\x9b", b"\xe2\x80\xae"]


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LWRECIPE_CONFIG", str(tmp_path / "no-config.toml"))


def lw(project: Project, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-I", "-m", "lwrecipe", "--cache", str(project.root / "cache"), *args],
        cwd=project.root,
        capture_output=True,
    )


def assert_clean(*streams: bytes) -> None:
    for data in streams:
        for raw in RAW:
            assert raw not in data, (raw, data[-2000:])


def hostile(project: Project, name: str, then: str) -> None:
    project.recipe(
        name,
        script_recipe(
            name, f"printf '{HOSTILE}\\n'\nprintf 'no newline{HOSTILE}'\n{then}", 'host_tools = ["printf", "sleep"]'
        ),
    )


def test_a_failure_tail_and_log_are_escaped(project: Project) -> None:
    hostile(project, "evil", "exit 1")
    result = lw(project, "build", "evil")
    assert result.returncode == 1
    assert b"evil: build script exited with status 1" in result.stderr
    assert b"\\x1b]52;c;SGVsbG8=\\x07" in result.stderr  # shown, not acted on
    assert_clean(result.stdout, result.stderr)
    log = lw(project, "log", "evil")
    assert log.returncode == 0 and b"\\x1b]0;pwned\\x07" in log.stdout
    assert_clean(log.stdout, log.stderr)


def test_build_v_and_the_log_of_a_build_are_escaped(project: Project) -> None:
    hostile(project, "evil", 'echo ok > "$LW_OUT/ok"')
    result = lw(project, "-v", "build", "evil")
    assert result.returncode == 0, result.stderr
    assert b"evil| \\x1b]52;c;SGVsbG8=\\x07" in result.stderr
    assert_clean(result.stdout, result.stderr)
    log = lw(project, "log", "evil")
    assert log.returncode == 0 and b"hidden\\rshown" in log.stdout
    assert_clean(log.stdout, log.stderr)


def test_log_follow_is_escaped(project: Project) -> None:
    hostile(project, "evil", 'sleep 3\necho ok > "$LW_OUT/ok"')
    cache = project.root / "cache"
    build = subprocess.Popen(
        [sys.executable, "-I", "-m", "lwrecipe", "--cache", str(cache), "build", "evil"],
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not list((cache / "tmp").glob("build-evil-*/build.log")):
            assert time.monotonic() < deadline and build.poll() is None
            time.sleep(0.1)
        follow = lw(project, "log", "evil", "--follow")
    finally:
        build.wait()
    assert follow.returncode == 0 and b"\\x1b]0;pwned\\x07" in follow.stdout
    assert_clean(follow.stdout, follow.stderr)


def test_an_error_quoting_a_recipe_value_is_escaped(project: Project) -> None:
    project.recipe(
        "evil",
        script_recipe(
            "evil",
            "true",
            extra=(
                '[[sources]]\nurl = "http://127.0.0.1:9/x\\u001b]0;pwned\\u0007.tar.gz"\nsha256 = "' + "0" * 64 + '"'
            ),
        ),
    )
    result = lw(project, "build", "evil")
    assert result.returncode != 0
    assert b"could not be fetched" in result.stderr and b"x\\x1b]0;pwned\\x07.tar.gz" in result.stderr
    assert_clean(result.stdout, result.stderr)


def test_a_warning_quoting_a_command_line_value_is_escaped(project: Project) -> None:
    project.recipe("fine", script_recipe("fine", 'echo ok > "$LW_OUT/ok"'))
    result = lw(project, "build", "fine", "--with-recipe", "gone\x1b]0;x\x07=recipes/fine.toml")
    assert_clean(result.stdout, result.stderr)


def test_show_escapes_a_description(project: Project) -> None:
    project.recipe(
        "evil",
        script_recipe("evil", "true").replace(
            'license = "MIT"', 'license = "MIT"\ndescription = "nice\\u001b]52;c;SGVsbG8=\\u0007\\u202e"'
        ),
    )
    result = lw(project, "show", "evil")
    assert result.returncode == 0, result.stderr
    assert_clean(result.stdout, result.stderr)
