"""`cache verify|push|pull|gc|stats`: the local cache and moving outputs to and from remotes."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from .common import EPILOG, Context, open_remotes, project_client, project_mirrors, project_settings

if TYPE_CHECKING:
    from ..inputs.fetch import Reporter
    from ..remote.remote import Remotes
    from ..store.store import Quarantined, Store


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cache", help="inspect and maintain the local cache", epilog=EPILOG)
    cache_sub = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    v = cache_sub.add_parser(
        "verify", help="re-hash every entry; quarantine corrupt ones (exit 3 if any)", epilog=EPILOG
    )
    v.add_argument(
        "--repair", action="store_true", help="fetch again (mirrors, URLs) or pull again (remotes) what was quarantined"
    )
    v.set_defaults(func=cmd_cache_verify)
    pu = cache_sub.add_parser("push", help="upload outputs to a remote cache", epilog=EPILOG)
    pu.add_argument("remote", metavar="REMOTE", help="a URL, a directory or a configured remote's name")
    pu.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET",
        help="what to push with its dependencies (default: what lockfile.toml pins, else everything)",
    )
    pu.add_argument("-j", "--jobs", type=int, default=4, metavar="N", help="parallel transfers (default 4)")
    pu.set_defaults(func=cmd_cache_push)
    pl = cache_sub.add_parser("pull", help="download the targets' outputs with their dependencies", epilog=EPILOG)
    pl.add_argument("remote", metavar="REMOTE", help="a URL, a directory or a configured remote's name")
    pl.add_argument("targets", nargs="+", metavar="TARGET")
    pl.add_argument("-j", "--jobs", type=int, default=4, metavar="N", help="parallel transfers (default 4)")
    pl.add_argument(
        "--no-verify-signatures", action="store_true", help="use records no trusted key signed (said in the output)"
    )
    pl.set_defaults(func=cmd_cache_pull)
    g = cache_sub.add_parser("gc", help="remove least recently used entries", epilog=EPILOG)
    g.add_argument("--max-size", metavar="SIZE", help="shrink the cache to SIZE (500M, 10G, ...)")
    g.add_argument("--older-than", type=float, metavar="DAYS", help="remove what has not been used for DAYS")
    g.add_argument("--keep-locked", action="store_true", help="never remove what lockfile.toml pins")
    g.add_argument("--lockfile", metavar="F", help="the lockfile for --keep-locked (default: the project's)")
    g.add_argument("--dry-run", action="store_true", help="say what would be removed")
    g.add_argument(
        "--remote",
        metavar="R",
        help="collect this remote (a directory, or a WebDAV server that lists: "
        "nginx with dav-ext) instead of the local cache; needs --keep-lockfile",
    )
    g.add_argument(
        "--keep-lockfile",
        action="append",
        default=[],
        metavar="F",
        help="with --remote: keep everything these lockfiles' releases need (repeatable); the rest goes, oldest first",
    )
    g.add_argument(
        "--grace",
        type=float,
        default=1.0,
        metavar="HOURS",
        help="with --remote: never remove what is younger (pushes in flight; default 1)",
    )
    g.set_defaults(func=cmd_cache_gc)
    st = cache_sub.add_parser("stats", help="sizes and counts", epilog=EPILOG)
    st.set_defaults(func=cmd_cache_stats)


def cmd_cache_verify(ctx: Context) -> int:
    from ..store.store import Store
    from ..store.verify import verify_cache

    store = Store(ctx.cache_dir)
    found = verify_cache(store)
    report = found.report
    for entry in report.quarantined:
        ctx.out(f"quarantined {entry.line(store.root)}")
    for line in found.wrong:
        ctx.out(f"removed {line}: the output it said the blob holds is not what it holds")
    ctx.info(
        f"{report.checked} entries checked, {len(report.quarantined)} corrupt quarantined, "
        f"{len(found.wrong)} wrong facts removed, {report.stale_tmp} stale staging files removed"
    )
    if found.corrupt:
        from ..core.errors import IntegrityError

        if ctx.args.repair and report.quarantined:
            _repair(ctx, store, report.quarantined)
        raise IntegrityError(
            f"{store.root}: {found.corrupt} corrupt entries (quarantined in {store.root / 'quarantine'})"
        )
    return 0


def _repair(ctx: Context, store: Store, quarantined: list[Quarantined]) -> None:
    """Get what was quarantined again: sources from the project's recipes (through
    the mirrors), records and output blobs from the configured remotes. Says what
    it got and what it could not; the exit status stays 3 (something was corrupt)."""
    from ..build.repair import Repair, pull_again, repair_sources
    from ..recipes.graph import load_graph, project_root
    from ..store.verify import keys_to_pull

    def said(repair: Repair) -> None:
        ctx.out(repair.line())

    root = project_root(Path.cwd())
    graph = load_graph([str(p) for p in sorted((root / "recipes").glob("*.toml"))])
    mirrors = project_mirrors(ctx, root)
    keys = keys_to_pull(store, quarantined)
    with project_client(ctx, root) as client:
        repair_sources(store, graph, root, mirrors, client, quarantined, said)
    if not keys:
        return
    settings = project_settings(ctx, root)
    if not settings.remotes:
        pull_again(None, keys, said)
        return
    with open_remotes(ctx, settings, True) as remotes:
        pull_again(remotes, keys, said)


def _remote_for(ctx: Context, text: str, verify: bool = True) -> Remotes:
    from dataclasses import replace

    from ..recipes.graph import project_root

    settings = project_settings(ctx, project_root(Path.cwd()), [text])
    return open_remotes(ctx, replace(settings, remotes=settings.remotes[:1]), verify, reporter=_transfer_reporter(ctx))


def _transfer_reporter(ctx: Context) -> Reporter:
    from ..inputs.fetch import NullReporter
    from .progress import PlainReporter

    # Plain lines even on a terminal: transfers run in parallel and end quickly.
    return NullReporter() if ctx.verbosity < 0 else PlainReporter()


def cmd_cache_push(ctx: Context) -> int:
    from ..audit.lockfile import LOCKFILE, pinned_ids
    from ..build.transfer import keys_to_push, push_keys
    from ..core.errors import raise_all
    from ..recipes.graph import load_graph, project_root
    from ..store.store import Store

    lockfile = project_root(Path.cwd()) / LOCKFILE
    graph = load_graph(ctx.args.targets) if ctx.args.targets else None
    keys = keys_to_push(Store(ctx.cache_dir), graph, pinned_ids(lockfile) if lockfile.is_file() else None)
    with _remote_for(ctx, ctx.args.remote) as remotes:
        backend = remotes.backends[0]
        result = push_keys(remotes, backend, keys, ctx.args.jobs)
    ctx.info(
        f"{result.pushed} pushed, {result.present} already on {backend.spec.name}"
        + (f", {len(result.errors)} failed" if result.errors else "")
    )
    raise_all(result.errors)
    return 0


def cmd_cache_pull(ctx: Context) -> int:
    from ..build.transfer import pull_closure
    from ..core.errors import raise_all
    from ..recipes.graph import load_graph
    from ..store.store import Store

    graph = load_graph(ctx.args.targets)
    with _remote_for(ctx, ctx.args.remote, not ctx.args.no_verify_signatures) as remotes:
        result = pull_closure(
            remotes,
            remotes.backends[0],
            graph,
            Store(ctx.cache_dir).ensure(),
            ctx.args.jobs,
            lambda name, how, output: ctx.info(f"{name:<16} {how:<8} {output[:12]}"),
        )
    ctx.info(
        f"{len(result.pulled)} pulled, {len(result.present)} already here"
        + (f", {len(result.missing)} not pulled ({', '.join(result.missing)})" if result.missing else "")
    )
    raise_all(result.errors)
    return 0


def cmd_cache_gc(ctx: Context) -> int:
    from ..audit.lockfile import LOCKFILE, pinned_ids
    from ..core.errors import UsageError
    from ..core.sizes import parse_size
    from ..recipes.graph import project_root
    from ..store.gc import collect
    from ..store.store import Store
    from .progress import human_size

    args = ctx.args
    if args.remote is not None or args.keep_lockfile:
        return _remote_gc(ctx)
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
    for kept in report.failed:
        ctx.out(f"{verb} {kept} (a failed build's directory kept by --keep-failed)")
    ctx.info(
        f"{verb} {len(report.removed)} entries, {human_size(report.freed)}; "
        f"kept {report.kept}, {human_size(report.remaining)}"
    )
    return 0


def _remote_gc(ctx: Context) -> int:
    """`cache gc --remote R --keep-lockfile F...`: roots are the lockfiles' build keys."""
    import time

    from ..audit.lockfile import locked_keys
    from ..core.errors import UsageError
    from ..core.sizes import parse_size
    from ..remote.gc import collect_remote
    from .progress import human_size

    args = ctx.args
    if args.remote is None or not args.keep_lockfile:
        raise UsageError(
            "cache gc: --remote R and --keep-lockfile F go together (the lockfiles say what the remote must keep)"
        )
    if args.keep_locked or args.lockfile:
        raise UsageError("cache gc --remote: name the lockfiles with --keep-lockfile")
    roots = locked_keys(args.keep_lockfile)
    max_size = parse_size(args.max_size) if args.max_size is not None else None
    with _remote_for(ctx, args.remote) as remotes:
        backend = remotes.backends[0]
        report = collect_remote(
            backend, roots, time.time(), max_size, args.older_than, args.grace * 3600, dry_run=args.dry_run
        )
    verb = "would remove" if args.dry_run else "removed"
    for key in report.roots_missing:
        ctx.info(f"warning: {backend.spec.name} holds no record for ac/{key[:12]}, which a lockfile names")
    for unit in report.removed:
        ctx.out(f"{verb} {unit.label} ({len(unit.entries)} files, {human_size(unit.size)})")
    if report.young:
        ctx.info(f"kept {report.young} unneeded entries younger than the grace period ({args.grace:g} h)")
    ctx.info(
        f"{verb} {len(report.removed)} entries, {human_size(report.freed)} from {backend.spec.name}; "
        f"kept {report.kept_entries} files, {human_size(report.remaining)}"
    )
    return 0


def cmd_cache_stats(ctx: Context) -> int:
    from ..store.store import Store
    from .progress import human_size

    for kind, (count, size) in Store(ctx.cache_dir).stats().items():
        ctx.out(f"{kind:<8} {count:>7} entries  {human_size(size):>10}")
    return 0
