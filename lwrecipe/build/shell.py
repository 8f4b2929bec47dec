"""`shell`: the sandbox a build of a recipe gets, entered by a person — its
dependencies built or taken from the cache, its sources staged (or a failed
build's directory as it was left), and a command run in it. Nothing done there
enters the cache; parsing the command and saying what runs is the caller's job."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import BuildFailed, MissingToolError, UsageError
from ..inputs.entries import UnpackLimits
from ..inputs.hosttools import debian_package
from ..inputs.sources import Fetch
from ..recipes.graph import Graph
from ..store.store import Store
from .builder import BuildOptions, build_job, kept_failure, stage
from .engine import Engine
from .plan import Planned, plan_recipe
from .sandbox import Job, Layout, bwrap_argv, prepare, require_sandbox


@dataclass(frozen=True)
class Sandbox:
    """A build's sandbox, prepared: what runs in it runs as the build would."""

    job: Job
    bwrap: str

    def run(self, command: Sequence[str]) -> int:
        return subprocess.run(bwrap_argv(self.job, self.bwrap, command)).returncode


@contextlib.contextmanager
def build_sandbox(
    store: Store,
    graph: Graph,
    fetch: Callable[[list[Planned]], Fetch],
    unpack_limits: Callable[[], UnpackLimits],
    after_failure: bool,
    target: str,
    say: Callable[[str], None],
) -> Iterator[Sandbox]:
    """The sandbox of a build of the graph's one target (`target`: as the user named
    it), its dependencies built first; after_failure: over the directory a failed
    `build --keep-failed` left. `say` gets warnings, each dependency's state and
    which directory it is. unpack_limits is asked once the sandbox is known to run
    (reading the settings may warn). Held like a build holds it until the block ends."""
    name = graph.targets[0]
    bwrap = require_sandbox(False)
    assert bwrap is not None  # require_sandbox(False) raises instead
    kept = kept_failure(store, name)
    if after_failure and not kept.is_dir():
        raise UsageError(f"{name}: no failed build is kept (run `lwrecipe build {target} --keep-failed`)")
    depends = graph.recipes[name].depends
    unpack = unpack_limits()
    engine = Engine(
        store,
        fetch,
        BuildOptions(jobs=os.cpu_count() or 1, unpack=unpack),
        warn=lambda t: say(f"warning: {t}"),
        on_event=lambda dep, state: say(f"{dep}: {state}"),
    )
    outcomes = engine.build(dataclasses.replace(graph, targets=tuple(depends))) if depends else []
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        raise BuildFailed(name, f"its dependency {failed[0].name} did not build: {failed[0].error}")
    item = plan_recipe(graph.recipes[name], {d: engine.outputs[d] for d in depends})
    if item.missing_tools:
        raise MissingToolError(name, item.missing_tools[0], debian_package(item.missing_tools[0]))
    # held like a build holds it: `cache gc` waits rather than remove what the shell has bound
    with (
        store.lock("gc", shared=True),
        tempfile.TemporaryDirectory(dir=store.root / "tmp", prefix=f"shell-{name}-") as tmp,
    ):
        deps = engine.dependencies(item, Path(tmp) / "deps")
        if after_failure:
            job = build_job(item, deps, Layout(kept), bwrap, os.cpu_count() or 1)
            say(f"{name}: the build directory a failed build left ({kept})")
        else:
            job = stage(item, fetch([item]), deps, Layout(Path(tmp) / "build"), bwrap, os.cpu_count() or 1, unpack)
        prepare(job)
        yield Sandbox(job, bwrap)
