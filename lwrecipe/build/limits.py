"""Which limits a run has: its builds' (docs/builds.md "Limits") — each flag, else
the user's config `[build]`, else an accepted project's; those a cgroup enforces
are dropped, with a warning, where no cgroup can be made — and what one source
archive may unpack to (`[unpack]`). Enforcing them is supervise.py's and
inputs/entries.py's job."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..core.config.files import setting
from ..inputs.entries import UnpackLimits
from .cgroups import probe
from .supervise import Limit, Limits

LIMITS = ("timeout", "max_silent_time", "max_log_size", "max_memory", "max_procs")


def chosen_limits(
    flags: Mapping[str, float | None], files: list[tuple[Path, Any]], warn: Callable[[str], None]
) -> Limits:
    """The limits of this run's builds: `flags` (each of LIMITS, None where not
    given), else `[build]` in the config `files` (config_files: an unaccepted
    project's is not among them)."""
    found: dict[str, Limit] = {}
    for name in LIMITS:
        flag = flags[name]
        configured = setting(files, "build", name)
        if flag is not None:
            found[name] = Limit(flag, "--" + name.replace("_", "-"))
        elif configured is not None:
            found[name] = Limit(configured[0], f"{name} in {configured[1]}")
    limits = Limits(**found)
    if limits.needs_cgroup and not probe().enforceable:
        named = ", ".join(f.origin for f in (limits.max_memory, limits.max_procs) if f is not None)
        warn(f"{named}: not enforced here: {probe().why}")
        limits = Limits(**{k: v for k, v in found.items() if k not in ("max_memory", "max_procs")})
    return limits


def chosen_unpack(files: list[tuple[Path, Any]]) -> UnpackLimits:
    """What one source archive may unpack to: `[unpack]` in the config `files` (the
    user's, else an accepted project's), else the defaults."""
    found = {
        name: given[0] for name in ("max_size", "max_entries") if (given := setting(files, "unpack", name)) is not None
    }
    return UnpackLimits(**found)
