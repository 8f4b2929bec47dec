"""Which limits a run's builds get, on plain values: a flag over the user's config,
the config where no flag is given, and where each came from; and what a source
archive may unpack to."""

from __future__ import annotations

from pathlib import Path

from lwrecipe.build.cgroups import probe
from lwrecipe.build.limits import LIMITS, chosen_limits, chosen_unpack
from lwrecipe.core.config.schema import BuildLimitsEntry, ConfigFile, UnpackEntry
from lwrecipe.inputs.entries import UnpackLimits

NONE = dict.fromkeys(LIMITS)


def files(path: Path, **build: float) -> list[tuple[Path, ConfigFile]]:
    return [(path, ConfigFile(build=BuildLimitsEntry(**build)))]


def test_a_flag_wins_over_the_config_and_each_says_where_it_is_from(tmp_path: Path) -> None:
    user = tmp_path / "config.toml"
    warned: list[str] = []
    limits = chosen_limits({**NONE, "timeout": 60.0}, files(user, timeout=600, max_silent_time=30), warned.append)
    assert limits.timeout is not None and (limits.timeout.value, limits.timeout.origin) == (60.0, "--timeout")
    assert limits.max_silent_time is not None
    assert (limits.max_silent_time.value, limits.max_silent_time.origin) == (30, f"max_silent_time in {user}")
    assert limits.max_log_size is None and warned == []


def test_nothing_given_is_no_limit(tmp_path: Path) -> None:
    assert chosen_limits(NONE, [(tmp_path / "none.toml", ConfigFile())], print) == chosen_limits(NONE, [], print)


def test_cgroup_limits_are_kept_or_dropped_with_a_warning() -> None:
    warned: list[str] = []
    limits = chosen_limits({**NONE, "max_procs": 10, "timeout": 5.0}, [], warned.append)
    assert limits.timeout is not None
    if probe().enforceable:
        assert limits.max_procs is not None and warned == []
    else:
        assert limits.max_procs is None
        assert warned == [f"--max-procs: not enforced here: {probe().why}"]


def test_unpack_limits_from_the_config_else_the_defaults(tmp_path: Path) -> None:
    assert chosen_unpack([]) == UnpackLimits()
    given = [(tmp_path / "config.toml", ConfigFile(unpack=UnpackEntry(max_entries=10)))]
    assert chosen_unpack(given) == UnpackLimits(max_entries=10)
