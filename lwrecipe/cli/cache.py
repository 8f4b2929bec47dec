"""`cache verify|push|pull|gc|stats`: the local cache and moving outputs to and from remotes."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import EPILOG, Context, open_remotes, project_settings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="inspect and maintain the local cache", epilog=EPILOG)
    cache_sub = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    v = cache_sub.add_parser("verify", help="re-hash every entry; remove corrupt ones", epilog=EPILOG)
    v.set_defaults(func=cmd_cache_verify)
    pu = cache_sub.add_parser("push", help="upload outputs to a remote cache", epilog=EPILOG)
    pu.add_argument("remote", metavar="REMOTE", help="a URL, a directory or a configured remote's name")
    pu.add_argument("targets", nargs="*", metavar="TARGET",
                    help="what to push with its dependencies (default: what lockfile.toml pins, else everything)")
    pu.add_argument("-j", "--jobs", type=int, default=4, metavar="N", help="parallel transfers (default 4)")
    pu.set_defaults(func=cmd_cache_push)
    pl = cache_sub.add_parser("pull", help="download the targets' outputs with their dependencies", epilog=EPILOG)
    pl.add_argument("remote", metavar="REMOTE", help="a URL, a directory or a configured remote's name")
    pl.add_argument("targets", nargs="+", metavar="TARGET")
    pl.add_argument("-j", "--jobs", type=int, default=4, metavar="N", help="parallel transfers (default 4)")
    pl.add_argument("--no-verify-signatures", action="store_true",
                    help="use records no trusted key signed (said in the output)")
    pl.set_defaults(func=cmd_cache_pull)
    g = cache_sub.add_parser("gc", help="remove least recently used entries", epilog=EPILOG)
    g.add_argument("--max-size", metavar="SIZE", help="shrink the cache to SIZE (500M, 10G, ...)")
    g.add_argument("--older-than", type=float, metavar="DAYS", help="remove what has not been used for DAYS")
    g.add_argument("--keep-locked", action="store_true", help="never remove what lockfile.toml pins")
    g.add_argument("--lockfile", metavar="F", help="the lockfile for --keep-locked (default: the project's)")
    g.add_argument("--dry-run", action="store_true", help="say what would be removed")
    g.set_defaults(func=cmd_cache_gc)
    st = cache_sub.add_parser("stats", help="sizes and counts", epilog=EPILOG)
    st.set_defaults(func=cmd_cache_stats)


def cmd_cache_verify(ctx: Context) -> int:
    from ..store.store import Store

    store = Store(ctx.cache_dir)
    report = store.verify_all()
    if store.exists():
        from ..store.outputs import recheck_facts

        facts, wrong = recheck_facts(store)
        report.checked += facts
        report.removed += wrong
    for line in report.removed:
        ctx.out(f"removed corrupt {line}")
    ctx.info(f"{report.checked} entries checked, {len(report.removed)} corrupt removed, "
             f"{report.stale_tmp} stale staging files removed")
    return 0


def _remote_for(ctx: Context, text: str, verify: bool = True):  # noqa: ANN202
    from dataclasses import replace

    from ..recipes.graph import project_root

    settings = project_settings(project_root(Path.cwd()), [text])
    return open_remotes(ctx, replace(settings, remotes=settings.remotes[:1]), verify,
                         reporter=_transfer_reporter(ctx))


def _transfer_reporter(ctx: Context):  # noqa: ANN202
    from ..inputs.fetch import NullReporter
    from .progress import PlainReporter

    # Plain lines even on a terminal: transfers run in parallel and end quickly.
    return NullReporter() if ctx.verbosity < 0 else PlainReporter()


def cmd_cache_push(ctx: Context) -> int:
    from ..audit.lockfile import LOCKFILE, pinned_ids
    from ..build.transfer import keys_to_push, push_keys
    from ..errors import raise_all
    from ..recipes.graph import load_graph, project_root
    from ..store.store import Store

    lockfile = project_root(Path.cwd()) / LOCKFILE
    graph = load_graph(ctx.args.targets) if ctx.args.targets else None
    keys = keys_to_push(Store(ctx.cache_dir), graph, pinned_ids(lockfile) if lockfile.is_file() else None)
    with _remote_for(ctx, ctx.args.remote) as remotes:
        backend = remotes.backends[0]
        result = push_keys(remotes, backend, keys, ctx.args.jobs)
    ctx.info(f"{result.pushed} pushed, {result.present} already on {backend.spec.name}"
             + (f", {len(result.errors)} failed" if result.errors else ""))
    raise_all(result.errors)
    return 0


def cmd_cache_pull(ctx: Context) -> int:
    from ..build.transfer import pull_closure
    from ..errors import raise_all
    from ..recipes.graph import load_graph
    from ..store.store import Store

    graph = load_graph(ctx.args.targets)
    with _remote_for(ctx, ctx.args.remote, not ctx.args.no_verify_signatures) as remotes:
        result = pull_closure(remotes, remotes.backends[0], graph, Store(ctx.cache_dir).ensure(), ctx.args.jobs,
                              lambda name, how, output: ctx.info(f"{name:<16} {how:<8} {output[:12]}"))
    ctx.info(f"{len(result.pulled)} pulled, {len(result.present)} already here"
             + (f", {len(result.missing)} not pulled ({', '.join(result.missing)})" if result.missing else ""))
    raise_all(result.errors)
    return 0


def cmd_cache_gc(ctx: Context) -> int:
    from ..audit.lockfile import LOCKFILE, pinned_ids
    from ..errors import UsageError
    from ..recipes.graph import project_root
    from ..store.gc import collect, parse_size
    from ..store.store import Store
    from .progress import human_size

    args = ctx.args
    if args.max_size is None and args.older_than is None:
        raise UsageError("cache gc: give --max-size SIZE and/or --older-than DAYS")
    pinned: set[str] = set()
    if args.keep_locked:
        pinned = pinned_ids(Path(args.lockfile) if args.lockfile else project_root(Path.cwd()) / LOCKFILE)
    max_size = parse_size(args.max_size) if args.max_size is not None else None
    report = collect(Store(ctx.cache_dir), max_size, args.older_than, pinned, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for unit in report.removed:
        ctx.out(f"{verb} {unit.label} ({human_size(unit.size)})")
    ctx.info(f"{verb} {len(report.removed)} entries, {human_size(report.freed)}; "
             f"kept {report.kept}, {human_size(report.remaining)}")
    return 0


def cmd_cache_stats(ctx: Context) -> int:
    from ..store.store import Store
    from .progress import human_size

    for kind, (count, size) in Store(ctx.cache_dir).stats().items():
        ctx.out(f"{kind:<8} {count:>7} entries  {human_size(size):>10}")
    return 0
