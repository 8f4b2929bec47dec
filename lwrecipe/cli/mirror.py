"""`mirror export`: write every input of the targets into a mirror directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import EPILOG, Context, load_targets, project_mirrors, substitute_args, table, target_args


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("mirror", help="mirror directories for air-gapped builds", epilog=EPILOG)
    mirror_sub = p.add_subparsers(dest="mirror_command", metavar="ACTION", required=True)
    e = mirror_sub.add_parser(
        "export",
        help="write every input of the targets (files by sha256 and name, git "
        "trees by commit) into DIR, for LWRECIPE_MIRRORS=DIR ... --offline",
        epilog=EPILOG,
    )
    e.add_argument("directory", metavar="DIR", help="the mirror directory (created if missing, added to if not)")
    target_args(e)
    substitute_args(e)
    e.add_argument("-j", "--jobs", type=int, default=4, metavar="N", help="parallel downloads (default 4)")
    e.add_argument("--offline", action="store_true", help="export only what the cache and the mirrors hold")
    e.add_argument("--no-deps", action="store_true", help="only the targets' own inputs, not their dependencies'")
    e.set_defaults(func=cmd_mirror_export)


def cmd_mirror_export(ctx: Context) -> int:
    from ..inputs.export import export
    from ..store.store import Store
    from .build import fetch_inputs
    from .progress import human_size

    graph = load_targets(ctx, ctx.args.targets)
    names = graph.targets if ctx.args.no_deps else graph.closure(graph.targets)
    fetched = fetch_inputs(ctx, graph, names, ctx.args.jobs, ctx.args.offline)
    directory = Path(ctx.args.directory).absolute()
    rows = export(
        fetched,
        Store(ctx.cache_dir),
        directory,
        project_mirrors(ctx, graph.recipes[graph.targets[0]].root),
        ctx.args.offline,
    )
    if rows:
        table(
            ctx,
            [
                ("INPUT", "FILE", "SIZE", "STATE", "NOTE"),
                *((r.label, r.name, human_size(r.size), "written" if r.written else "kept", r.note) for r in rows),
            ],
        )
    total = sum(r.size for r in rows)
    written = sum(r.written for r in rows)
    ctx.info(
        f"{len(rows)} inputs ({human_size(total)}) in {directory}: {written} written, "
        f"{len(rows) - written} already there"
    )
    return 0
