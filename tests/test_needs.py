"""The markers that name what a test needs of the machine (`sandbox`, `root`,
`browser`): checked once, in tests/conftest.py, before the test runs. Missing, the
test is skipped, except under CI=true, where it fails: CI always has what the tests
need."""

from __future__ import annotations

import os

import pytest

import tests.conftest
from tests.conftest import pytest_runtest_setup


@pytest.fixture
def without_sandbox(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> pytest.Item:
    """This test's own item, marked `sandbox`, on a machine where bubblewrap cannot
    create one."""
    monkeypatch.setattr(tests.conftest, "bwrap_path", lambda: None)
    item: pytest.Item = request.node
    item.add_marker("sandbox")
    return item


def test_a_missing_sandbox_skips_the_test(without_sandbox: pytest.Item, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="bubblewrap"):
        pytest_runtest_setup(without_sandbox)


def test_under_ci_a_missing_sandbox_fails_the_test(
    without_sandbox: pytest.Item, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must have it"):
        pytest_runtest_setup(without_sandbox)


def test_a_test_not_marked_sandbox_runs_without_one(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tests.conftest, "bwrap_path", lambda: None)
    monkeypatch.setenv("CI", "true")
    pytest_runtest_setup(request.node)


def test_under_ci_a_test_marked_root_fails_when_not_root(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("CI", "true")
    request.node.add_marker("root")
    with pytest.raises(pytest.fail.Exception, match="root"):
        pytest_runtest_setup(request.node)


def test_under_ci_a_test_marked_browser_fails_without_chromium(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tests.conftest, "chromium", lambda: None)
    monkeypatch.setenv("CI", "true")
    request.node.add_marker("browser")
    with pytest.raises(pytest.fail.Exception, match="chromium"):
        pytest_runtest_setup(request.node)
