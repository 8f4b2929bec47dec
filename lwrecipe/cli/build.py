"""`fetch`, `build` and `checkout`: getting inputs, building outputs, materialising them."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .common import (
    EPILOG,
    Context,
    load_targets,
    lockfile_path,
    open_remotes,
    project_client,
    project_mirrors,
    project_settings,
    remote_args,
    say,
    say_error,
    substitute_args,
    table,
    target_args,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from ..build.plan import Planned
    from ..build.supervise import Limits
    from ..inputs.entries import UnpackLimits
    from ..inputs.fetch import Reporter
    from ..inputs.sources import Fetch
    from ..recipes.graph import Graph
    from ..remote.config import RemoteSpec
    from ..remote.execution import Executor


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("fetch", help="download and verify every input of the targets", epilog=EPILOG)
    target_args(p)
    substitute_args(p)
    p.add_argument("-j", "--jobs", type=int, default=4, metavar="N", help="parallel downloads (default 4)")
    p.add_argument(
        "--offline",
        action="store_true",
        help="never touch the network (mirror directories are read); list what is missing",
    )
    p.add_argument("--no-deps", action="store_true", help="only the targets' own inputs, not their dependencies'")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("build", help="build the targets and everything they depend on", epilog=EPILOG)
    target_args(p)
    substitute_args(p)
    p.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="independent recipes built at once (default 1); each build gets LW_JOBS = CPUs / N",
    )
    p.add_argument("--keep-going", action="store_true", help="after a failure, build what does not depend on it")
    p.add_argument("--rebuild", action="store_true", help="build even what is cached")
    p.add_argument(
        "--check",
        action="store_true",
        help="rebuild the targets even when cached and fail (exit 3) if the output differs",
    )
    p.add_argument("--offline", action="store_true", help="never touch the network")
    p.add_argument(
        "--no-sandbox",
        action="store_true",
        help="where bubblewrap cannot run, build anyway on host paths (recorded in the build record)",
    )
    remote_args(p)
    p.add_argument("--push", action="store_true", help="upload what is built here to every remote")
    p.add_argument(
        "--executor",
        metavar="URL",
        help="run builds on pinned roots on a REAPI executor (grpc://host:port[/instance] or a configured "
        "remote's name); -j is then the number of remote builds at once",
    )
    p.add_argument(
        "--locked",
        action="store_true",
        help="refuse (exit 3) to build anything whose inputs or output differ from lockfile.toml",
    )
    p.add_argument(
        "--keep-failed",
        action="store_true",
        help="keep a failed build's directory (cache/failed/<recipe>; `shell --after-failure` enters it)",
    )
    limit_args(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("checkout", help="materialise a built output in a directory", epilog=EPILOG)
    target_args(p, many=False)
    substitute_args(p)
    p.add_argument("dest", metavar="DEST", help="directory to create")
    p.add_argument("--with-deps", action="store_true", help="also each dependency, in DEST/<name>")
    p.set_defaults(func=cmd_checkout)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds > 0")
    return value


def _size(text: str) -> int:
    from ..core.errors import UsageError
    from ..core.sizes import parse_size

    try:
        value = parse_size(text)
    except UsageError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 100M or 1G")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number > 0")
    return int(text)


def limit_args(p: argparse.ArgumentParser) -> None:
    """Nix's build limits; each also `[build] <name>` in the user's config (docs/builds.md "Limits")."""
    p.add_argument("--timeout", type=_seconds, metavar="S", help="stop a build that runs longer than S seconds")
    p.add_argument(
        "--max-silent-time", type=_seconds, metavar="S", help="stop a build that prints nothing for S seconds"
    )
    p.add_argument("--max-log-size", type=_size, metavar="SIZE", help="stop a build whose log passes SIZE (100M, 1G)")
    p.add_argument(
        "--max-memory",
        type=_size,
        metavar="SIZE",
        help="stop a build whose processes use more than SIZE of memory (a cgroup; where one can be made)",
    )
    p.add_argument(
        "--max-procs",
        type=_count,
        metavar="N",
        help="stop a build that tries to run more than N processes at once (a cgroup)",
    )


def unpack_limits(ctx: Context, project: Path) -> UnpackLimits:
    """What one source archive may unpack to: the user's config `[unpack]`, else an
    accepted project's (an unaccepted project's is ignored with the usual warning),
    else the defaults."""
    from ..build.limits import chosen_unpack

    return chosen_unpack(ctx.config_files(project))


def build_limits(ctx: Context, project: Path) -> Limits:
    """The limits of this run's builds: the flags, else the user's config `[build]`,
    else an accepted project's (an unaccepted project's is ignored with the warning
    every such setting gets: it could only be a stranger's raising them)."""
    from ..build.limits import LIMITS, chosen_limits

    return chosen_limits(
        {name: getattr(ctx.args, name) for name in LIMITS},
        ctx.config_files(project),
        lambda text: ctx.info(f"warning: {text}"),
    )


def fetch_inputs(
    ctx: Context, graph: Graph, names: Sequence[str], jobs: int, offline: bool, reporter: Reporter | None = None
) -> Fetch:
    import contextlib

    from ..inputs.fetch import Downloader
    from ..inputs.sources import fetch_recipes
    from ..store.store import Store
    from .progress import RichReporter, make_reporter

    store = Store(ctx.cache_dir).ensure()
    mirrors = project_mirrors(ctx, graph.recipes[graph.targets[0]].root)
    reporter = reporter or make_reporter(quiet=ctx.verbosity < 0)
    with (
        project_client(ctx, graph.recipes[graph.targets[0]].root) as client,
        reporter if isinstance(reporter, RichReporter) else contextlib.nullcontext(),
    ):
        downloader = Downloader(store, client, mirrors=mirrors.files, held=mirrors.held, reporter=reporter)
        return fetch_recipes(
            [graph.recipes[n] for n in names], store, downloader, jobs=jobs, offline=offline, mirrors=mirrors
        )


def engine_fetch(
    ctx: Context, graph: Graph, offline: bool = False, reporter: Reporter | None = None
) -> Callable[[list[Planned]], Fetch]:
    """What an Engine is handed to fetch the inputs of the recipes it builds."""
    return lambda items: fetch_inputs(ctx, graph, [i.name for i in items], 4, offline, reporter=reporter)


def cmd_fetch(ctx: Context) -> int:
    from .progress import human_size

    graph = load_targets(ctx, ctx.args.targets)
    names = graph.targets if ctx.args.no_deps else graph.closure(graph.targets)
    result = fetch_inputs(ctx, graph, names, ctx.args.jobs, ctx.args.offline)
    rows = [
        (f.wanted.label, f.wanted.basename, human_size(f.size), f.wanted.sha256[:12], f.origin)
        for f in result.files.values()
    ]
    rows += [
        (t.label, f"git {t.rev[:12]}", human_size(t.path.stat().st_size), t.sha256[:12], t.origin)
        for t in result.trees.values()
    ]
    rows.sort()
    if rows:
        table(ctx, [("INPUT", "FILE", "SIZE", "SHA256", "FROM"), *rows])
    for (recipe, index), sha in sorted(result.source_patches.items()):
        ctx.out(f"{recipe}: patches[{index}]: sha256 {sha}")
    ctx.info(f"{len(rows)} inputs verified")
    return 0


@contextlib.contextmanager
def open_executor(spec: RemoteSpec | None) -> Iterator[Executor | None]:
    if spec is None:
        yield None
        return
    from ..remote.backends.opening import open_reapi
    from ..remote.execution import Executor

    backend = open_reapi(spec)
    try:
        yield Executor(backend)
    finally:
        backend.close()


def cmd_build(ctx: Context) -> int:
    from ..audit.locked import check_locked
    from ..build.builder import BuildOptions
    from ..build.engine import Engine
    from ..store.store import Store
    from .progress import BuildDisplay, DisplayReporter

    graph = load_targets(ctx, ctx.args.targets)
    if ctx.args.locked and graph.substituted:
        from ..core.errors import UsageError

        raise UsageError("--locked with --with-recipe: the lockfile pins the project's recipes, not stand-ins")
    for name in sorted(graph.substituted):
        ctx.info(f"{name}: from {graph.recipes[name].display} (--with-recipe)")
    lock = check_locked(lockfile_path(ctx, None), graph, ctx.cache_dir) if ctx.args.locked else None
    store = Store(ctx.cache_dir)
    parallel = max(1, ctx.args.jobs)
    settings = project_settings(ctx, graph.recipes[graph.targets[0]].root, ctx.args.remote, ctx.args.executor)
    # Remote builds are not sharing this machine's cores: each gets LW_JOBS = its CPUs.
    cores = (os.cpu_count() or 1) if settings.executor else max(1, (os.cpu_count() or 1) // parallel)
    options = BuildOptions(
        jobs=cores,
        no_sandbox=ctx.args.no_sandbox,
        secret=settings.secret,
        keep_failed=ctx.args.keep_failed,
        limits=build_limits(ctx, graph.recipes[graph.targets[0]].root),
        unpack=unpack_limits(ctx, graph.recipes[graph.targets[0]].root),
    )
    streamed = ctx.verbosity > 0  # build -v: each line a build writes, as it writes it
    if ctx.args.no_sandbox:
        ctx.info("warning: --no-sandbox: builds run on host paths and may depend on this machine")
    with (
        BuildDisplay(quiet=ctx.verbosity < 0) as display,
        open_remotes(
            ctx, settings, not ctx.args.no_verify_signatures, ctx.args.offline, DisplayReporter(display)
        ) as remotes,
        open_executor(settings.executor) as executor,
    ):
        fetch = engine_fetch(ctx, graph, ctx.args.offline, DisplayReporter(display))  # only recipes that build
        if streamed:
            options = dataclasses.replace(options, on_output=lambda name, line: display.log(f"{name}| {line}"))
        push_to = [b for b in remotes.backends if b.spec.push or (ctx.args.push and not b.spec.pull_only)]
        engine = Engine(
            store,
            fetch,
            options,
            rebuild=ctx.args.rebuild,
            keep_going=ctx.args.keep_going,
            check=ctx.args.check,
            parallel=parallel,
            on_event=display.event,
            remotes=remotes,
            push_to=push_to,
            warn=lambda text: display.log(f"warning: {text}"),
            executor=executor,
        )
        outcomes = engine.build(graph)
    code = 0
    for outcome in outcomes:
        detail = f"{outcome.output_id[:12]}" if outcome.output_id else ""
        if outcome.state == "built":
            detail += f"  {outcome.seconds:.1f}s"
        ctx.info(f"{outcome.name:<16} {outcome.state:<8} {detail}")
    for outcome in outcomes:
        if outcome.error is not None:
            for line in outcome.error.lines():
                say_error(line)
            tail, log = getattr(outcome.error, "tail", ""), getattr(outcome.error, "log_path", None)
            if tail:
                say(tail)
            if log:
                say(f"log: {log}")
            code = max(code, outcome.error.exit_code)
    if lock is not None:
        from ..audit.locked import after_build

        held = after_build(lock, store, outcomes, settings.trusted)
        if held.drift is not None:
            for line in held.drift.lines():
                say_error(line)
            code = max(code, held.drift.exit_code)
        for problem in held.unsigned:
            say_error(f"{lock.path.name}: --locked: {problem}")
            code = max(code, 3)
    counts = {
        s: sum(o.state == s for o in outcomes)
        for s in ("built", "cached", "pulled", "remote", "checked", "failed", "skipped")
    }
    not_started = len(graph.closure(graph.targets)) - len(outcomes)
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n or s in ("built", "cached"))
    ctx.info(summary + (f", {not_started} not started" if not_started else ""))
    return code


def cmd_checkout(ctx: Context) -> int:
    from ..build.checkout import checkout

    graph = load_targets(ctx, [ctx.args.target])
    for done in checkout(ctx.cache_dir, graph, Path(ctx.args.dest), ctx.args.with_deps):
        ctx.info(f"{done.name}: {done.output_id[:12]} -> {done.where}")
    return 0
