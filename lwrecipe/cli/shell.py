"""`shell`, `log`, `pin` and `new`: a recipe author's loop — enter a build's sandbox,
read its log, pin new sources, start a recipe."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from .common import EPILOG, Context, load_targets, project_client, project_mirrors, substitute_args, target_args


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "shell",
        help="a shell (or one command) in the sandbox a build of TARGET gets",
        epilog=EPILOG,
        description="Dependencies are built or taken from the cache first; "
        "/build/src holds the sources with the patches applied, /deps/<name> each dependency, "
        "the variables and PATH are the build's, there is no network, and the build script is "
        "/build/.lwrecipe/script.sh. Nothing done in it enters the cache.",
    )
    target_args(p, many=False)
    substitute_args(p)
    p.add_argument(
        "--after-failure",
        action="store_true",
        help="enter the directory a failed `build --keep-failed` left, as the build left it",
    )
    p.set_defaults(func=cmd_shell, takes_command=True)  # `-- CMD...` after the options: what runs instead of bash
    p.usage = "lwrecipe shell [-h] [--with-recipe NAME=FILE] [--after-failure] TARGET [-- CMD...]"
    g = sub.add_parser("log", help="the log of the last build of TARGET (or of the running one)", epilog=EPILOG)
    target_args(g, many=False)
    substitute_args(g)
    g.add_argument("--follow", action="store_true", help="the log of a running build of TARGET as it is written")
    g.set_defaults(func=cmd_log)
    pn = sub.add_parser(
        "pin",
        help='download and write the sha256 of sources marked sha256 = "update" (or '
        "without one), and the commit of git sources given a ref",
        epilog=EPILOG,
    )
    target_args(pn, many=False)
    pn.add_argument(
        "--version",
        metavar="X",
        help="the new version: replaced in package.version and in every URL "
        "that holds the old one, whose files are then pinned",
    )
    pn.add_argument(
        "--ref",
        action="append",
        default=[],
        metavar="[NAME=]REF",
        help="a branch or tag whose commit the git source NAME (the only one, without NAME=) pins",
    )
    pn.add_argument("--dry-run", action="store_true", help="print the change, write nothing")
    pn.set_defaults(func=cmd_pin)
    nw = sub.add_parser(
        "new", help="a recipe skeleton from a release archive: pinned, with a guessed build", epilog=EPILOG
    )
    nw.add_argument("name", metavar="NAME", help="the recipe's name (written to recipes/NAME.toml)")
    nw.add_argument("--url", required=True, help="the release archive")
    nw.add_argument("--version", metavar="X", help="default: read from the archive's file name")
    nw.set_defaults(func=cmd_new)


def cmd_shell(ctx: Context) -> int:
    import dataclasses
    import os
    import subprocess
    import tempfile

    from ..build.builder import BuildOptions, build_job, kept_failure, stage
    from ..build.engine import Engine
    from ..build.plan import plan_recipe
    from ..build.sandbox import BUILD, Layout, bwrap_argv, prepare, require_sandbox
    from ..core.errors import BuildFailed, MissingToolError, UsageError
    from ..inputs.hosttools import debian_package
    from ..store.store import Store
    from .build import engine_fetch, unpack_limits

    graph = load_targets(ctx, [ctx.args.target])
    name = graph.targets[0]
    command = ctx.args.extra[1:] if ctx.args.extra[:1] == ["--"] else ctx.args.extra
    store = Store(ctx.cache_dir).ensure()
    bwrap = require_sandbox(False)
    kept = kept_failure(store, name)
    if ctx.args.after_failure and not kept.is_dir():
        raise UsageError(f"{name}: no failed build is kept (run `lwrecipe build {ctx.args.target} --keep-failed`)")
    depends = graph.recipes[name].depends

    fetch = engine_fetch(ctx, graph)
    unpack = unpack_limits(ctx, graph.recipes[name].root)
    engine = Engine(
        store,
        fetch,
        BuildOptions(jobs=os.cpu_count() or 1, unpack=unpack),
        warn=lambda t: ctx.info(f"warning: {t}"),
        on_event=lambda dep, state: ctx.info(f"{dep}: {state}"),
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
        if ctx.args.after_failure:
            job = build_job(item, deps, Layout(kept), bwrap, os.cpu_count() or 1)
            ctx.info(f"{name}: the build directory a failed build left ({kept})")
        else:
            job = stage(item, fetch([item]), deps, Layout(Path(tmp) / "build"), bwrap, os.cpu_count() or 1, unpack)
        prepare(job)
        shell = command or ["/bin/bash", "-i"]
        ctx.info(
            f"{name}: {' '.join(shell)} in {BUILD}/src; the build script is {BUILD}/.lwrecipe/script.sh "
            "(nothing done here enters the cache)"
        )
        sys.stdout.flush()
        return subprocess.run(bwrap_argv(job, bwrap, shell)).returncode  # type: ignore[arg-type]


def cmd_log(ctx: Context) -> int:
    import time

    from ..build.builder import kept_failure
    from ..core.errors import UsageError
    from ..store.store import Store

    graph = load_targets(ctx, [ctx.args.target])
    name = graph.targets[0]
    store = Store(ctx.cache_dir)
    if ctx.args.follow:
        return _follow(ctx, store, name)
    record = _last_record(store, name)
    failure = store.root / "logs" / f"{name}.log"  # kept by a failed build, removed by the next one that works
    if failure.is_file():
        failed_at = failure.stat().st_mtime
        where = (
            f"; its build directory is kept in {kept_failure(store, name)}"
            if kept_failure(store, name).is_dir()
            else ""
        )
        ctx.info(
            f"{name}: the log of the failed build of {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(failed_at))}"
            f" ({failure}){where}"
        )
        with failure.open("rb") as fh:
            _print_log(iter(lambda: fh.read(CHUNK), b""))
        return 0
    if record is None:
        raise UsageError(f"{name}: never built in {store.root} (no record and no failure log)")
    import zstandard

    ctx.info(f"{name}: the log of its build of {record.started} (output {record.output_id[:12]})")
    with (
        store.open_blob("cas", record.log) as blob,
        zstandard.ZstdDecompressor().stream_reader(blob, read_across_frames=True) as reader,
    ):
        _print_log(iter(lambda: reader.read(CHUNK), b""))
    return 0


CHUNK = 1 << 20


def _print_log(chunks: Iterator[bytes]) -> None:
    """A log on standard output, piece by piece, as a terminal may show it: its
    control characters escaped (terminal.py), tabs and newlines kept."""
    from ..core.terminal import printable_bytes

    for text in printable_bytes(chunks):
        sys.stdout.write(text)
        sys.stdout.flush()


def _last_record(store, name: str):
    """The record of the last build or use of `name` here (`why` keeps the key)."""
    key = store.last(name) if store.exists() else None
    return store.read_record(key) if key is not None else None


def _follow(ctx: Context, store, name: str) -> int:
    """Print a running build's log as it grows, until that build's directory is gone."""
    import os

    from ..core.errors import UsageError

    running = (
        sorted((store.root / "tmp").glob(f"build-{name}-*/build.log"), key=lambda p: p.stat().st_mtime)
        if store.exists()
        else []
    )
    if not running:
        raise UsageError(f"{name}: no build of it is running in {store.root}")
    log = running[-1]
    ctx.info(f"{name}: following {log}")
    try:
        # held open: what is written before the build's directory goes is still read
        fh = os.fdopen(os.open(log, os.O_RDONLY | os.O_NOFOLLOW), "rb")
    except FileNotFoundError:
        return 0
    with fh:
        _print_log(_grown(fh, log))
    return 0


def _grown(fh, log: Path) -> Iterator[bytes]:
    """What is written to `fh` until the build's directory (`log`'s) is gone."""
    import time

    while True:
        gone = not log.parent.exists()
        chunk = fh.read(CHUNK)
        if chunk:
            yield chunk
        elif gone:
            return
        else:
            time.sleep(0.2)


def _client_store(ctx: Context):
    from ..store.store import Store

    return project_client(ctx), Store(ctx.cache_dir).ensure()


def cmd_pin(ctx: Context) -> int:
    from ..core.files import replace_text
    from ..inputs.pinning import pin_recipe
    from ..recipes.graph import project_root, resolve_target
    from ..recipes.recipe import display_path

    path = resolve_target(ctx.args.target)
    refs = dict(r.partition("=")[::2] if "=" in r else ("", r) for r in ctx.args.ref)
    client, store = _client_store(ctx)
    with client:
        mirrors = project_mirrors(ctx, project_root(path.parent))
        result = pin_recipe(path, store, client, ctx.args.version, refs, mirrors)
    for line in result.pinned:
        ctx.info(line)
    if result.new_text == result.old_text:
        ctx.info(f"{display_path(path)}: every pin is current")
        return 0
    ctx.out(result.diff(display_path(path)).rstrip("\n"))
    if not ctx.args.dry_run:
        replace_text(path, result.new_text)
        ctx.info(f"{display_path(path)}: written")
    return 0


def cmd_new(ctx: Context) -> int:
    import re

    from ..core.errors import UsageError
    from ..core.files import replace_text
    from ..inputs.pinning import download_unpinned, guess_version, skeleton
    from ..recipes.graph import project_root
    from ..recipes.recipe import display_path, load_recipe

    name = ctx.args.name
    if not re.fullmatch(r"[a-z0-9][a-z0-9._+-]*", name):
        raise UsageError(f"new: {name!r} is not a recipe name (lower-case letters, digits, . _ + -)")
    root = project_root(Path.cwd())
    path = root / "recipes" / f"{name}.toml"
    if path.exists():
        raise UsageError(f"{display_path(path)}: already exists")
    version = ctx.args.version or guess_version(ctx.args.url)
    if version is None:
        raise UsageError(f"new: no version in the file name of {ctx.args.url}; give --version")
    client, store = _client_store(ctx)
    with client:
        sha, size = download_unpinned(store, client, ctx.args.url)
    environment = "buildenv" if (root / "recipes" / "buildenv.toml").is_file() else None
    text, what = skeleton(name, ctx.args.url, sha, version, store.path("sources", sha), environment)
    path.parent.mkdir(exist_ok=True)
    replace_text(path, text)
    try:
        load_recipe(path)
    except Exception:
        path.unlink()
        raise
    ctx.out(text.rstrip("\n"))
    ctx.info(
        f"{display_path(path)}: written ({what}; {size} bytes pinned at sha256 {sha[:12]}…"
        + (f"; built on {environment}" if environment else "")
        + ")"
    )
    return 0
