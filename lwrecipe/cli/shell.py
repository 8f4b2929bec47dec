"""`shell`, `log`, `pin` and `new`: a recipe author's loop — enter a build's sandbox,
read its log, pin new sources, start a recipe."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .common import EPILOG, Context, load_targets, project_client, project_mirrors, substitute_args, target_args

if TYPE_CHECKING:
    from ..inputs.web import Client
    from ..store.store import Store


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    import functools

    from ..build.sandbox import BUILD
    from ..build.shell import build_sandbox
    from ..store.store import Store
    from .build import engine_fetch, unpack_limits

    graph = load_targets(ctx, [ctx.args.target])
    name = graph.targets[0]
    command = ctx.args.extra[1:] if ctx.args.extra[:1] == ["--"] else ctx.args.extra
    store = Store(ctx.cache_dir).ensure()
    fetch = engine_fetch(ctx, graph)
    unpack = functools.partial(unpack_limits, ctx, graph.recipes[name].root)
    with build_sandbox(store, graph, fetch, unpack, ctx.args.after_failure, ctx.args.target, ctx.info) as sandbox:
        shell = command or ["/bin/bash", "-i"]
        ctx.info(
            f"{name}: {' '.join(shell)} in {BUILD}/src; the build script is {BUILD}/.lwrecipe/script.sh "
            "(nothing done here enters the cache)"
        )
        sys.stdout.flush()
        return sandbox.run(shell)


def cmd_log(ctx: Context) -> int:
    import time

    from ..build.logs import failed_log, follow, last_record, recorded_log, running_log
    from ..core.errors import UsageError
    from ..store.store import Store

    graph = load_targets(ctx, [ctx.args.target])
    name = graph.targets[0]
    store = Store(ctx.cache_dir)
    if ctx.args.follow:
        log = running_log(store, name)
        ctx.info(f"{name}: following {log}")
        _print_log(follow(log))
        return 0
    record = last_record(store, name)
    failure = failed_log(store, name)
    if failure is not None:
        where = f"; its build directory is kept in {failure.kept}" if failure.kept is not None else ""
        ctx.info(
            f"{name}: the log of the failed build of "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(failure.written))} ({failure.path}){where}"
        )
        _print_log(failure.chunks())
        return 0
    if record is None:
        raise UsageError(f"{name}: never built in {store.root} (no record and no failure log)")
    ctx.info(f"{name}: the log of its build of {record.started} (output {record.output_id[:12]})")
    _print_log(recorded_log(store, record))
    return 0


def _print_log(chunks: Iterator[bytes]) -> None:
    """A log on standard output, piece by piece, as a terminal may show it: its
    control characters escaped (terminal.py), tabs and newlines kept."""
    from ..core.terminal import printable_bytes

    for text in printable_bytes(chunks):
        sys.stdout.write(text)
        sys.stdout.flush()


def _client_store(ctx: Context) -> tuple[Client, Store]:
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
    from ..inputs.pinning import plan_new, write_new
    from ..recipes.graph import project_root
    from ..recipes.recipe import display_path

    new = plan_new(project_root(Path.cwd()), ctx.args.name, ctx.args.url, ctx.args.version)
    client, store = _client_store(ctx)
    with client:
        written = write_new(new, store, client)
    ctx.out(written.text.rstrip("\n"))
    ctx.info(
        f"{display_path(new.path)}: written ({written.what}; {written.size} bytes pinned at sha256 {written.sha[:12]}…"
        + (f"; built on {new.environment}" if new.environment else "")
        + ")"
    )
    return 0
