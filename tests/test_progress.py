"""The build display: one line per recipe, live on a terminal, plain otherwise."""

from __future__ import annotations

import io

from lwrecipe.cli.progress import BuildDisplay, DisplayReporter, human_size


def test_plain_lines_for_each_change_of_state() -> None:
    out = io.StringIO()
    with BuildDisplay(stream=out, live=False) as display:
        for state in ("fetching", "building", "built"):
            display.event("musl", state)
        display.event("llvm", "cached")
        DisplayReporter(display).begin("musl: sources[0]", "musl-1.2.5.tar.gz", 1 << 20)
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["musl: fetching", "musl: building"]
    assert lines[2].startswith("musl: built after ")
    assert "llvm" not in out.getvalue()  # cached recipes say nothing until the summary
    assert lines[3] == "musl: sources[0]: musl-1.2.5.tar.gz (1.0 MiB)"


def test_live_display_renders_every_recipe() -> None:
    out = io.StringIO()
    with BuildDisplay(stream=out, live=True) as display:
        display.event("llvm", "cached")
        display.event("linux", "building")
        display.log("a message above the lines")
        display.event("linux", "built")
    text = out.getvalue()
    assert "llvm" in text and "linux" in text and "built" in text and "a message above the lines" in text


def test_quiet_display_says_nothing() -> None:
    out = io.StringIO()
    with BuildDisplay(stream=out, quiet=True) as display:
        display.event("x", "building")
        display.log("hidden")
    assert out.getvalue() == ""


def test_human_size() -> None:
    assert [human_size(n) for n in (None, 5, 2048, 3 << 20, 5 << 30)] == ["?", "5 B", "2.0 KiB", "3.0 MiB", "5.0 GiB"]
