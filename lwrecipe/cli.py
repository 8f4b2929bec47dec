"""The command line: argument parsing and output only.

Each command calls the library and formats what it returns; errors arrive as
LwrecipeError and leave as one `error: <where>: <what>` line per problem with
the documented exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import LwrecipeError

EPILOG = "Exit status: 0 success; 1 a build or command failed; 2 usage or recipe error; 3 integrity failure."


class Context:
    """What every command gets: the parsed global options."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.verbosity = args.verbose - args.quiet
        self.cache_dir = Path(args.cache or os.environ.get("LWRECIPE_CACHE") or "cache").absolute()

    def out(self, text: str = "") -> None:
        print(text)

    def info(self, text: str) -> None:
        if self.verbosity >= 0:
            print(text, file=sys.stderr)


def _target_args(p: argparse.ArgumentParser, many: bool = True) -> None:
    p.add_argument("targets" if many else "target", nargs="+" if many else None, metavar="TARGET",
                   help="a recipe file (recipes/busybox.toml) or a recipe name (busybox)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lwrecipe", epilog=EPILOG,
                                     description="Pinned, reproducible recipes for Linux on WebAssembly.")
    parser.add_argument("--version", action="version", version=f"lwrecipe {__version__}")
    parser.add_argument("--cache", metavar="DIR", help="local cache directory (default: $LWRECIPE_CACHE or ./cache)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="say more")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="say less")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("plan", help="build order, keys and status", epilog=EPILOG)
    _target_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _remote_args(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("show", help="print a resolved recipe", epilog=EPILOG)
    _target_args(p, many=False)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("graph", help="print the dependency graph", epilog=EPILOG)
    _target_args(p, many=False)
    p.add_argument("--dot", action="store_true", help="Graphviz output")
    p.set_defaults(func=cmd_graph)
    p = sub.add_parser("fetch", help="download and verify every input of the targets", epilog=EPILOG)
    _target_args(p)
    p.add_argument("-j", "--jobs", type=int, default=4, metavar="N", help="parallel downloads (default 4)")
    p.add_argument("--offline", action="store_true", help="never touch the network; list what is missing")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("build", help="build the targets and everything they depend on", epilog=EPILOG)
    _target_args(p)
    p.add_argument("-j", "--jobs", type=int, default=1, metavar="N",
                   help="independent recipes built at once (default 1); each build gets LW_JOBS = CPUs / N")
    p.add_argument("--keep-going", action="store_true", help="after a failure, build what does not depend on it")
    p.add_argument("--rebuild", action="store_true", help="build even what is cached")
    p.add_argument("--check", action="store_true",
                   help="rebuild the targets even when cached and fail (exit 3) if the output differs")
    p.add_argument("--offline", action="store_true", help="never touch the network")
    p.add_argument("--no-sandbox", action="store_true", help="where bubblewrap cannot run, build anyway on host paths (recorded in the build record)")
    _remote_args(p)
    p.add_argument("--push", action="store_true", help="upload what is built here to every remote")
    p.add_argument("--locked", action="store_true",
                   help="refuse (exit 3) to build anything whose inputs or output differ from lockfile.toml")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("checkout", help="materialise a built output in a directory", epilog=EPILOG)
    _target_args(p, many=False)
    p.add_argument("dest", metavar="DEST", help="directory to create")
    p.add_argument("--with-deps", action="store_true", help="also each dependency, in DEST/<name>")
    p.set_defaults(func=cmd_checkout)

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
    p = sub.add_parser("lock", help="write lockfile.toml: every input of the release", epilog=EPILOG)
    p.add_argument("targets", nargs="*", metavar="TARGET", help="recipes to lock (default: every recipe)")
    p.add_argument("--check", action="store_true", help="exit 3 if the lockfile would change; write nothing")
    p.add_argument("--offline", action="store_true", help="do not fetch git sources to fill first-use pins")
    p.set_defaults(func=cmd_lock)

    p = sub.add_parser("why", help="why a recipe is not cached or differs from the lock or its last build",
                       epilog=EPILOG)
    _target_args(p, many=False)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--lockfile", metavar="F", help="compare with this lockfile (default: the project's, if any)")
    p.set_defaults(func=cmd_why)

    p = sub.add_parser("audit", help="check the checkout and cache against the lockfile; print the input tree",
                       epilog=EPILOG)
    p.add_argument("--lockfile", metavar="F", help="the lockfile (default: the project's)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("sbom", help="a software bill of materials for a target", epilog=EPILOG)
    _target_args(p, many=False)
    p.add_argument("--format", required=True, choices=("spdx-json", "cyclonedx-json"))
    p.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    p.set_defaults(func=cmd_sbom)

    p = sub.add_parser("serve", help="serve a built site (default: runtime) or a directory to a browser",
                       epilog=EPILOG)
    p.add_argument("target", nargs="?", default="runtime", metavar="TARGET|DIR",
                   help="a built recipe's output (a recipe name wins over a directory of that name), "
                        "or a directory (default: runtime)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("key", help="signing keys for build records", epilog=EPILOG)
    key_sub = p.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    kg = key_sub.add_parser("generate", help="write a new ed25519 secret key; print its public key", epilog=EPILOG)
    kg.add_argument("name", metavar="NAME", help="the key's name, as it appears in trusted_keys")
    kg.add_argument("--out", required=True, metavar="FILE", help="secret key file to create (mode 0600)")
    kg.set_defaults(func=cmd_key_generate)
    return parser


def _remote_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--remote", action="append", metavar="URL",
                   help="a remote cache (repeatable; replaces LWRECIPE_REMOTES and the configured ones)")
    p.add_argument("--no-verify-signatures", action="store_true",
                   help="use remote records no trusted key signed (said in the output)")


def _settings(root: Path, remotes: list[str] | None = None):  # noqa: ANN202
    from .remote.config import load_settings

    return load_settings(root, remotes)


def _open_remotes(ctx: Context, settings, verify: bool, offline: bool = False, reporter=None):  # noqa: ANN001, ANN202
    from .remote.remote import Remotes
    from .store.store import Store

    if not verify:
        for spec in settings.remotes:
            ctx.info(f"warning: --no-verify-signatures: records from {spec.name} are used without signature checks")
    return Remotes.open(Store(ctx.cache_dir), settings, verify_signatures=verify, reporter=reporter,
                        offline=offline)


def _plan(ctx: Context, targets: Sequence[str]):  # noqa: ANN202 - returns (graph, planned)
    from .recipes.graph import load_graph
    from .build.plan import plan_graph
    from .build.status import StatusOracle

    graph = load_graph(targets)
    remote_urls = getattr(ctx.args, "remote", None)
    remotes = None
    if hasattr(ctx.args, "no_verify_signatures"):
        settings = _settings(graph.recipes[graph.targets[0]].root, remote_urls)
        if settings.remotes:
            remotes = _open_remotes(ctx, settings, not ctx.args.no_verify_signatures)
    oracle = StatusOracle(ctx.cache_dir, remotes, warn=lambda text: ctx.info(f"warning: {text}"))
    try:
        return graph, plan_graph(graph, oracle.output_id), oracle
    finally:
        if remotes is not None:
            remotes.close()


def _table(ctx: Context, rows: list[tuple[str, ...]]) -> None:
    """Left-aligned columns; the last one is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        ctx.out("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])


def _key_cell(item) -> str:  # noqa: ANN001
    if item.missing_tools:
        return "missing tool: " + ", ".join(item.missing_tools)
    if item.key is None:
        return "after " + ", ".join(item.waiting_on)
    return item.key[:12]


def cmd_plan(ctx: Context) -> int:
    _, planned, oracle = _plan(ctx, ctx.args.targets)
    rows = [{"name": p.name, "version": p.recipe.version, "key": p.key, "status": oracle.status(p),
             "depends": list(p.recipe.depends), "missing_tools": list(p.missing_tools),
             "waiting_on": list(p.waiting_on), "recipe": p.recipe.display} for p in planned]
    if ctx.args.json:
        ctx.out(json.dumps(rows, indent=2))
        return 0
    _table(ctx, [("NAME", "VERSION", "KEY", "STATUS"),
                 *[(r["name"], r["version"], _key_cell(p), r["status"]) for r, p in zip(rows, planned)]])
    return 0


def _fetch_inputs(ctx: Context, graph, names: list[str], jobs: int, offline: bool,  # noqa: ANN001, ANN202
                  reporter=None):  # noqa: ANN001
    import contextlib

    from .inputs.fetch import Downloader, make_client, user_mirrors, MIRRORS_ENV
    from .progress import RichReporter, make_reporter
    from .inputs.sources import fetch_recipes
    from .store.store import Store

    store = Store(ctx.cache_dir).ensure()
    reporter = reporter or make_reporter(quiet=ctx.verbosity < 0)
    with make_client() as client, (reporter if isinstance(reporter, RichReporter) else contextlib.nullcontext()):
        downloader = Downloader(store, client, mirrors=user_mirrors(os.environ.get(MIRRORS_ENV)), reporter=reporter)
        return fetch_recipes([graph.recipes[n] for n in names], store, downloader, jobs=jobs, offline=offline)


def cmd_fetch(ctx: Context) -> int:
    from .recipes.graph import load_graph
    from .progress import human_size

    graph = load_graph(ctx.args.targets)
    names = graph.closure(graph.targets)
    result = _fetch_inputs(ctx, graph, names, ctx.args.jobs, ctx.args.offline)
    rows = [(f.wanted.label, f.wanted.basename, human_size(f.size), f.wanted.sha256[:12], f.origin)
            for f in result.files.values()]
    rows += [(t.label, f"git {t.rev[:12]}", human_size(t.path.stat().st_size), t.sha256[:12], t.origin)
             for t in result.trees.values()]
    rows.sort()
    if rows:
        _table(ctx, [("INPUT", "FILE", "SIZE", "SHA256", "FROM"), *rows])
    for (recipe, index), sha in sorted(result.source_patches.items()):
        ctx.out(f"{recipe}: patches[{index}]: sha256 {sha}")
    ctx.info(f"{len(rows)} inputs verified")
    return 0


def cmd_build(ctx: Context) -> int:
    from .build.builder import BuildOptions
    from .build.engine import Engine
    from .recipes.graph import load_graph
    from .progress import BuildDisplay, DisplayReporter
    from .store.store import Store

    graph = load_graph(ctx.args.targets)
    lock = check_locked(ctx, graph) if ctx.args.locked else None
    store = Store(ctx.cache_dir)
    parallel = max(1, ctx.args.jobs)
    settings = _settings(graph.recipes[graph.targets[0]].root, ctx.args.remote)
    options = BuildOptions(jobs=max(1, (os.cpu_count() or 1) // parallel), no_sandbox=ctx.args.no_sandbox,
                           secret=settings.secret)
    if ctx.args.no_sandbox:
        ctx.info("warning: --no-sandbox: builds run on host paths and may depend on this machine")
    with BuildDisplay(quiet=ctx.verbosity < 0) as display, \
            _open_remotes(ctx, settings, not ctx.args.no_verify_signatures, ctx.args.offline,
                          DisplayReporter(display)) as remotes:
        def fetch(items):  # noqa: ANN001, ANN202 - called only for recipes that build
            return _fetch_inputs(ctx, graph, [i.name for i in items], 4, ctx.args.offline,
                                 reporter=DisplayReporter(display))

        push_to = [b for b in remotes.backends if ctx.args.push or b.spec.push]
        engine = Engine(store, fetch, options, rebuild=ctx.args.rebuild, keep_going=ctx.args.keep_going,
                        check=ctx.args.check, parallel=parallel, on_event=display.event, remotes=remotes,
                        push_to=push_to, warn=lambda text: display.log(f"warning: {text}"))
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
                print(f"error: {line}", file=sys.stderr)
            tail, log = getattr(outcome.error, "tail", ""), getattr(outcome.error, "log_path", None)
            if tail:
                print(tail, file=sys.stderr)
            if log:
                print(f"log: {log}", file=sys.stderr)
            code = max(code, outcome.error.exit_code)
    if lock is not None:
        from .errors import LockDrift

        drift = [f"{o.name}: output {lock.recipes[o.name]['output_id'][:12]}… → {o.output_id[:12]}…"
                 for o in outcomes if o.output_id and lock.recipes[o.name]["output_id"]
                 and o.output_id != lock.recipes[o.name]["output_id"]]
        if drift:
            error = LockDrift(lock.path.name, drift)
            for line in error.lines():
                print(f"error: {line}", file=sys.stderr)
            code = max(code, error.exit_code)
    counts = {s: sum(o.state == s for o in outcomes)
              for s in ("built", "cached", "pulled", "remote", "checked", "failed", "skipped")}
    not_started = len(graph.closure(graph.targets)) - len(outcomes)
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n or s in ("built", "cached"))
    ctx.info(summary + (f", {not_started} not started" if not_started else ""))
    return code


def cmd_checkout(ctx: Context) -> int:
    from .errors import UsageError
    from .recipes.graph import load_graph
    from .store.outputs import restore
    from .build.plan import plan_graph
    from .build.status import StatusOracle

    graph = load_graph([ctx.args.target])
    oracle = StatusOracle(ctx.cache_dir)
    planned = {p.name: p for p in plan_graph(graph, oracle.output_id)}
    dest = Path(ctx.args.dest)
    if dest.exists():
        raise UsageError(f"{dest}: already exists")
    target = graph.targets[0]
    names = graph.closure([target]) if ctx.args.with_deps else [target]
    for name in names:
        key = planned[name].key
        record = oracle.store.read_record(key) if key else None
        if record is None:
            raise UsageError(f"{name}: not built (run `lwrecipe build {name}` first)")
        where = dest / name if ctx.args.with_deps else dest
        if not oracle.store.has("cas", record["blob"]["sha256"]):
            raise UsageError(f"{name}: output {record['output_id'][:12]} is known but its bytes are not in this "
                             f"cache (run `lwrecipe cache pull REMOTE {name}`)")
        restore(oracle.store, record["blob"]["sha256"], record["output_id"], where)
        ctx.info(f"{name}: {record['output_id'][:12]} -> {where}")
    return 0


def cmd_cache_verify(ctx: Context) -> int:
    from .store.store import Store

    store = Store(ctx.cache_dir)
    report = store.verify_all()
    if store.exists():
        from .store.outputs import recheck_facts

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

    from .recipes.graph import project_root

    settings = _settings(project_root(Path.cwd()), [text])
    return _open_remotes(ctx, replace(settings, remotes=settings.remotes[:1]), verify,
                         reporter=_transfer_reporter(ctx))


def _transfer_reporter(ctx: Context):  # noqa: ANN202
    from .progress import PlainReporter
    from .inputs.fetch import NullReporter

    # Plain lines even on a terminal: transfers run in parallel and end quickly.
    return NullReporter() if ctx.verbosity < 0 else PlainReporter()


def cmd_cache_push(ctx: Context) -> int:
    from .errors import raise_all
    from .recipes.graph import load_graph, project_root
    from .audit.lockfile import LOCKFILE, pinned_ids
    from .store.store import Store
    from .build.transfer import keys_to_push, push_keys

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
    from .errors import raise_all
    from .recipes.graph import load_graph
    from .store.store import Store
    from .build.transfer import pull_closure

    graph = load_graph(ctx.args.targets)
    with _remote_for(ctx, ctx.args.remote, not ctx.args.no_verify_signatures) as remotes:
        result = pull_closure(remotes, remotes.backends[0], graph, Store(ctx.cache_dir).ensure(), ctx.args.jobs,
                              lambda name, how, output: ctx.info(f"{name:<16} {how:<8} {output[:12]}"))
    ctx.info(f"{len(result.pulled)} pulled, {len(result.present)} already here"
             + (f", {len(result.missing)} not pulled ({', '.join(result.missing)})" if result.missing else ""))
    raise_all(result.errors)
    return 0


def _lockfile_path(ctx: Context, given: str | None) -> Path:
    from .recipes.graph import project_root
    from .audit.lockfile import LOCKFILE

    return Path(given) if given else project_root(Path.cwd()) / LOCKFILE


def _all_recipes(root: Path) -> list[str]:
    return sorted(str(p) for p in (root / "recipes").glob("*.toml"))


def cmd_lock(ctx: Context) -> int:
    from .errors import IntegrityError
    from .recipes.graph import load_graph, project_root
    from .audit.lockfile import LOCKFILE, build_entries, fetch_first_use_pins, read, render, write
    from .build.status import StatusOracle
    from .store.store import Store

    root = project_root(Path.cwd())
    graph = load_graph(ctx.args.targets or _all_recipes(root))
    if not ctx.args.offline:
        fetch_first_use_pins(graph, Store(ctx.cache_dir), lambda text: ctx.info(f"warning: {text}"))
    path = root / LOCKFILE
    entries = dict(read(path).recipes) if path.exists() and ctx.args.targets else {}
    entries.update(build_entries(graph, Store(ctx.cache_dir), StatusOracle(ctx.cache_dir).output_id))
    text = render(entries)
    old = path.read_text() if path.exists() else None
    if ctx.args.check:
        if old != text:
            before = read(path).recipes if old is not None else {}
            changed = sorted(n for n in entries if before.get(n) != entries[n]) or ["(format)"]
            raise IntegrityError(f"{path}: out of date for {', '.join(changed)} (run `lwrecipe lock`)")
        ctx.info(f"{path}: up to date ({len(entries)} recipes)")
        return 0
    if old != text:
        write(path, text)
    ctx.info(f"{path}: {'unchanged' if old == text else 'written'} ({len(entries)} recipes)")
    return 0


def cmd_why(ctx: Context) -> int:
    from .recipes.graph import load_graph
    from .audit.lockfile import read
    from .store.store import Store
    from .audit.why import Why

    graph = load_graph([ctx.args.target])
    lock_path = _lockfile_path(ctx, ctx.args.lockfile)
    lock = read(lock_path) if ctx.args.lockfile or lock_path.is_file() else None
    reason = Why(graph, Store(ctx.cache_dir), lock).explain(graph.targets[0])
    if ctx.args.json:
        ctx.out(json.dumps(reason.document(), indent=2))
    else:
        for line in reason.lines():
            ctx.out(line)
        if reason.cached and not reason.against:
            ctx.info("nothing differs")
    return 0


def _audit_graph(lock, root: Path, ctx: Context):  # noqa: ANN001, ANN202
    """The lock's recipes as the checkout has them, or None where they cannot be loaded."""
    from .errors import LwrecipeError
    from .recipes.graph import load_graph

    paths = [str(root / e["recipe"]) for e in lock.recipes.values() if (root / e["recipe"]).is_file()]
    try:
        return load_graph(paths) if paths else None
    except LwrecipeError as exc:
        ctx.info(f"warning: recipes cannot be loaded, inputs not compared: {exc}")
        return None


def cmd_audit(ctx: Context) -> int:
    from .audit.audit import audit, render_tree
    from .errors import IntegrityError
    from .recipes.graph import project_root
    from .audit.lockfile import read
    from .store.store import Store

    root = project_root(Path.cwd())
    lock = read(_lockfile_path(ctx, ctx.args.lockfile))
    settings = _settings(root)
    report = audit(lock, root, Store(ctx.cache_dir), settings.trusted, _audit_graph(lock, root, ctx))
    if ctx.args.json:
        ctx.out(json.dumps({"lockfile": str(lock.path), "ok": not report.mismatches,
                            "mismatches": [f.text() for f in report.mismatches],
                            "flags": [f.text() for f in report.flags], "inputs": report.tree}, indent=2))
    else:
        for line in render_tree(report):
            ctx.out(line)
        for finding in report.flags:
            ctx.out(f"flag: {finding.text()}")
    if report.mismatches:
        raise IntegrityError(f"{lock.path}: {len(report.mismatches)} mismatches: "
                             + "; ".join(f.text() for f in report.mismatches))
    ctx.info(f"{lock.path}: {len(report.tree)} recipes match; {len(report.flags)} flags")
    return 0


def check_locked(ctx: Context, graph):  # noqa: ANN001, ANN201
    """Refuse before building when an input differs from the lockfile; returns the lock."""
    from .errors import LockDrift
    from .audit.lockfile import drift, read
    from .build.status import StatusOracle

    lock = read(_lockfile_path(ctx, None))
    changes = drift(lock, graph, StatusOracle(ctx.cache_dir).output_id)
    if changes:
        raise LockDrift(lock.path.name, [c.text() for c in changes])
    return lock


def cmd_sbom(ctx: Context) -> int:
    from .errors import LwrecipeError
    from .recipes.graph import load_graph
    from .audit.lockfile import build_entries
    from .audit.sbom import cyclonedx_json, spdx_json
    from .build.status import StatusOracle
    from .store.store import Store

    graph = load_graph([ctx.args.target])
    entries = build_entries(graph, Store(ctx.cache_dir), StatusOracle(ctx.cache_dir).output_id)
    render = spdx_json if ctx.args.format == "spdx-json" else cyclonedx_json
    try:
        text = render(graph.targets[0], entries)
    except ValueError as exc:
        raise LwrecipeError(f"sbom: {graph.targets[0]}: {exc}") from None
    if ctx.args.out:
        Path(ctx.args.out).write_text(text)
        ctx.info(f"{ctx.args.out}: {ctx.args.format}, {len(entries)} recipes")
    else:
        sys.stdout.write(text)
    return 0


def cmd_serve(ctx: Context) -> int:
    import shutil
    import tempfile

    from .errors import UsageError
    from .serve import make_server

    from .recipes.graph import project_root

    given = Path(ctx.args.target)
    tmp = None
    is_recipe = ctx.args.target.endswith(".toml") or (
        "/" not in ctx.args.target and (project_root(Path.cwd()) / "recipes" / f"{ctx.args.target}.toml").is_file())
    if not is_recipe and given.is_dir():
        root, what = given.resolve(), str(given)
    else:
        from .recipes.graph import load_graph
        from .store.outputs import restore
        from .build.plan import plan_graph
        from .build.status import StatusOracle

        graph = load_graph([ctx.args.target])
        oracle = StatusOracle(ctx.cache_dir)
        item = next(p for p in plan_graph(graph, oracle.output_id) if p.name == graph.targets[0])
        record = oracle.store.read_record(item.key) if item.key else None
        if record is None or not oracle.store.has("cas", record["blob"]["sha256"]):
            raise UsageError(f"{item.name}: not built (run `lwrecipe build {item.name}` first)")
        tmp = Path(tempfile.mkdtemp(dir=oracle.store.ensure().root / "tmp", prefix="serve-"))
        root = tmp / "site"
        restore(oracle.store, record["blob"]["sha256"], record["output_id"], root)
        what = f"{item.name} {record['output_id'][:12]}"
    try:
        server = make_server(root, ctx.args.host, ctx.args.port, quiet=ctx.verbosity < 1)
    except OSError as exc:
        raise UsageError(f"serve: cannot listen on {ctx.args.host}:{ctx.args.port}: {exc.strerror}") from None
    import signal

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    host, port = server.server_address[:2]
    print(f"serving {what} at http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def cmd_key_generate(ctx: Context) -> int:
    from .remote.signing import generate

    public = generate(ctx.args.name, Path(ctx.args.out))
    ctx.out(public.text())
    ctx.info(f"secret key written to {ctx.args.out} (mode 0600); add the line above to trusted_keys")
    return 0


def cmd_cache_gc(ctx: Context) -> int:
    from .errors import UsageError
    from .store.gc import collect, parse_size
    from .recipes.graph import project_root
    from .audit.lockfile import LOCKFILE, pinned_ids
    from .progress import human_size
    from .store.store import Store

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
    from .progress import human_size
    from .store.store import Store

    for kind, (count, size) in Store(ctx.cache_dir).stats().items():
        ctx.out(f"{kind:<8} {count:>7} entries  {human_size(size):>10}")
    return 0


def cmd_show(ctx: Context) -> int:
    from .show import describe

    graph, planned, _ = _plan(ctx, [ctx.args.target])
    item = next(p for p in planned if p.name == graph.targets[0])
    doc = describe(item)
    if ctx.args.json:
        ctx.out(json.dumps(doc, indent=2))
    else:
        from .show import render_text
        ctx.out(render_text(doc))
    return 0


def cmd_graph(ctx: Context) -> int:
    from .recipes.graph import load_graph

    graph = load_graph([ctx.args.target])
    names = graph.closure(graph.targets)
    if ctx.args.dot:
        ctx.out("digraph lwrecipe {")
        ctx.out("  rankdir=BT;")
        for name in names:
            r = graph.recipes[name]
            ctx.out(f'  "{name}" [label="{name}\\n{r.version}"];')
        for name in names:
            for dep in graph.deps(name):
                ctx.out(f'  "{name}" -> "{dep}";')
        ctx.out("}")
        return 0

    def walk(name: str, depth: int) -> None:
        ctx.out("  " * depth + f"{name} {graph.recipes[name].version}")
        for dep in sorted(graph.deps(name)):
            walk(dep, depth + 1)

    for target in graph.targets:
        walk(target, 0)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = Context(args)
    try:
        return args.func(ctx)
    except LwrecipeError as exc:
        for line in exc.lines():
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a file system failure outside the paths that report their own
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
