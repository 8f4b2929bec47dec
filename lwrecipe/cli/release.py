"""`lock`, `why`, `audit` and `sbom`: what a release is made of and whether it holds."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import (
    EPILOG,
    Context,
    load_targets,
    lockfile_path,
    open_remotes,
    plan_targets,
    project_mirrors,
    project_settings,
    remote_args,
    say_error,
    table,
    target_args,
)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lock", help="write lockfile.toml: every input of the release", epilog=EPILOG)
    p.add_argument("targets", nargs="*", metavar="TARGET", help="recipes to lock (default: every recipe)")
    p.add_argument("--check", action="store_true", help="exit 3 if the lockfile would change; write nothing")
    p.add_argument("--offline", action="store_true", help="do not fetch git sources to fill first-use pins")
    p.set_defaults(func=cmd_lock)

    p = sub.add_parser(
        "why", help="why a recipe is not cached or differs from the lock or its last build", epilog=EPILOG
    )
    target_args(p, many=False)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--lockfile", metavar="F", help="compare with this lockfile (default: the project's, if any)")
    remote_args(p)
    p.set_defaults(func=cmd_why)

    p = sub.add_parser(
        "audit", help="check the checkout and cache against the lockfile; print the input tree", epilog=EPILOG
    )
    p.add_argument("--lockfile", metavar="F", help="the lockfile (default: the project's)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--strict",
        action="store_true",
        help="a record in the cache that no trusted key signed is a failure (exit 3), not a flag",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="only look for what the lock names in the cache; re-hash nothing (for large stores)",
    )
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser(
        "challenge",
        help="ask every builder (this cache, each remote, with --rebuild a fresh "
        "build) which output the same inputs made; exit 3 when they differ",
        epilog=EPILOG,
    )
    target_args(p)
    remote_args(p)
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="also build each recipe here again (as build --check does) and compare that too",
    )
    p.set_defaults(func=cmd_challenge)

    p = sub.add_parser(
        "provenance",
        help="the signed SLSA provenance of TARGET's output (an in-toto statement in a DSSE envelope)",
        epilog=EPILOG,
    )
    target_args(p, many=False)
    p.add_argument("--out", metavar="F", help="write it to F (default: standard output)")
    p.set_defaults(func=cmd_provenance)

    p = sub.add_parser("sbom", help="a software bill of materials for a target", epilog=EPILOG)
    target_args(p, many=False)
    p.add_argument("--format", required=True, choices=("spdx-json", "cyclonedx-json"))
    p.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    p.set_defaults(func=cmd_sbom)


def _all_recipes(root: Path) -> list[str]:
    return sorted(str(p) for p in (root / "recipes").glob("*.toml"))


def cmd_lock(ctx: Context) -> int:
    from ..audit.lockfile import (
        LOCKFILE,
        FirstUsePins,
        build_entries,
        fetch_first_use_pins,
        locked_outputs,
        read,
        render,
        write,
    )
    from ..build.status import StatusOracle
    from ..core.errors import IntegrityError
    from ..recipes.graph import load_graph, project_root
    from ..store.store import Store

    root = project_root(Path.cwd())
    graph = load_graph(ctx.args.targets or _all_recipes(root))
    if not ctx.args.offline:
        fetch_first_use_pins(
            graph,
            Store(ctx.cache_dir),
            project_mirrors(ctx, graph.recipes[graph.targets[0]].root),
            lambda text: ctx.info(f"warning: {text}"),
        )
    path = root / LOCKFILE
    previous = read(path).recipes if path.exists() else {}
    entries = dict(previous) if ctx.args.targets else {}
    entries.update(
        build_entries(
            graph,
            Store(ctx.cache_dir),
            locked_outputs(previous, StatusOracle(ctx.cache_dir).output_id),
            FirstUsePins.of(previous),
        )
    )
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
    from ..audit.lockfile import read
    from ..audit.why import Why
    from ..recipes.graph import load_graph
    from ..store.store import Store

    graph = load_graph([ctx.args.target])
    if ctx.args.remote:
        return _why_remote(ctx, graph)
    lock_path = lockfile_path(ctx, ctx.args.lockfile)
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


def _why_remote(ctx: Context, graph) -> int:
    """`why TARGET --remote R`: this machine's inputs against each remote's newest
    record of TARGET, and down through the dependencies its record names."""
    from ..audit.why import RemoteSide, Why
    from ..core.errors import LwrecipeError
    from ..store.store import Store

    name = graph.targets[0]
    settings = project_settings(ctx, graph.recipes[name].root, ctx.args.remote)
    documents = []
    why = Why(graph, Store(ctx.cache_dir), None)  # this machine's side, worked out once for every remote
    with open_remotes(ctx, settings, not ctx.args.no_verify_signatures) as remotes:
        for backend in remotes.backends:
            side = RemoteSide(remotes, backend)
            reason = why.compare(name, side)
            documents.append({"remote": backend.spec.name, **reason.document()})
            if ctx.args.json:
                continue
            if reason.against or reason.causes or reason.absent:
                for line in reason.lines():
                    ctx.out(line)
            else:
                same = f"{name}: the same inputs as the newest record on {side.label} (key {reason.other_key[:12]}…)"
                try:  # the same inputs: then why a build here does not use it, if it does not
                    remotes.record(backend, reason.other_key)
                except LwrecipeError as exc:
                    same += f", which is not used here: {exc}"
                ctx.out(same)
    if ctx.args.json:
        ctx.out(json.dumps(documents, indent=2))
    return 0


def _audit_graph(lock, root: Path, ctx: Context):
    """The lock's recipes as the checkout has them, or None where they cannot be loaded."""
    from ..core.errors import LwrecipeError
    from ..recipes.graph import load_graph

    paths = [str(root / e["recipe"]) for e in lock.recipes.values() if (root / e["recipe"]).is_file()]
    try:
        return load_graph(paths) if paths else None
    except LwrecipeError as exc:
        ctx.info(f"warning: recipes cannot be loaded, inputs not compared: {exc}")
        return None


def cmd_audit(ctx: Context) -> int:
    from ..audit.audit import audit, render_tree
    from ..audit.lockfile import read
    from ..core.errors import IntegrityError
    from ..recipes.graph import project_root
    from ..store.store import Store

    root = project_root(Path.cwd())
    lock = read(lockfile_path(ctx, ctx.args.lockfile))
    settings = project_settings(ctx, root)
    report = audit(
        lock,
        root,
        Store(ctx.cache_dir),
        settings.trusted,
        _audit_graph(lock, root, ctx),
        strict=ctx.args.strict,
        quick=ctx.args.quick,
    )
    if ctx.args.json:
        ctx.out(
            json.dumps(
                {
                    "lockfile": str(lock.path),
                    "ok": not report.mismatches,
                    "mismatches": [f.text() for f in report.mismatches],
                    "flags": [f.text() for f in report.flags],
                    "inputs": report.tree,
                },
                indent=2,
            )
        )
    else:
        for line in render_tree(report):
            ctx.out(line)
        for finding in report.flags:
            ctx.out(f"flag: {finding.text()}")
    quick = " (quick: the cache was only looked in, nothing re-hashed)" if ctx.args.quick else ""
    if report.mismatches:
        for finding in report.mismatches:
            say_error(finding.text())
        raise IntegrityError(f"{lock.path}: {len(report.mismatches)} mismatches{quick}")
    ctx.info(f"{lock.path}: {len(report.tree)} recipes match; {len(report.flags)} flags{quick}")
    return 0


def cmd_sbom(ctx: Context) -> int:
    from ..audit.lockfile import build_entries
    from ..audit.sbom import cyclonedx_json, spdx_json
    from ..build.status import StatusOracle
    from ..core.errors import LwrecipeError
    from ..recipes.graph import load_graph
    from ..store.store import Store

    graph = load_graph([ctx.args.target])
    entries = build_entries(graph, Store(ctx.cache_dir), StatusOracle(ctx.cache_dir).output_id)
    render = spdx_json if ctx.args.format == "spdx-json" else cyclonedx_json
    try:
        text = render(graph.targets[0], entries)
    except ValueError as exc:
        raise LwrecipeError(f"sbom: {graph.targets[0]}: {exc}") from None
    _emit(ctx, text, f"{ctx.args.format}, {len(entries)} recipes,")
    return 0


def cmd_challenge(ctx: Context) -> int:
    import dataclasses
    import os

    from ..audit.challenge import LOCAL, REBUILD, challenge
    from ..core.digests import is_sha256
    from ..core.errors import IntegrityError, NotReproducible
    from ..store.store import Store

    graph = load_targets(ctx, ctx.args.targets)
    store = Store(ctx.cache_dir)
    settings = project_settings(ctx, graph.recipes[graph.targets[0]].root, ctx.args.remote)
    rebuilt = None
    if ctx.args.rebuild:
        from ..build.builder import BuildOptions
        from ..build.engine import Engine
        from .build import engine_fetch

        fetch = engine_fetch(ctx, graph)
        engine = Engine(
            store.ensure(),
            fetch,
            BuildOptions(jobs=os.cpu_count() or 1),
            check=True,
            keep_going=True,
            on_event=lambda name, state: ctx.info(f"{name}: {state}"),
        )
        outcomes = engine.build(dataclasses.replace(graph, targets=tuple(graph.closure(graph.targets))))
        rebuilt = {
            o.name: (
                o.output_id
                if o.state == "checked"
                else o.error.second
                if isinstance(o.error, NotReproducible)
                else f"not rebuilt ({o.state})"
            )
            for o in outcomes
        }
    with open_remotes(ctx, settings, not ctx.args.no_verify_signatures) as remotes:
        verdicts = challenge(graph, store, remotes if settings.remotes else None, rebuilt)
    builders = [LOCAL, *(s.name for s in settings.remotes), *([REBUILD] if rebuilt is not None else [])]

    def cell(value: str | None) -> str:
        return value[:12] if value and is_sha256(value) else (value or "missing")

    table(
        ctx,
        [
            ("NAME", "KEY", *builders, "VERDICT"),
            *((v.name, (v.key or "-")[:12], *(cell(v.views.get(b)) for b in builders), v.status) for v in verdicts),
        ],
    )
    differ = [v for v in verdicts if v.status == "differ"]
    for v in differ:
        ctx.out(f"{v.name}: builders differ")
        for line in v.explanation:
            ctx.out(f"  {line}")
    if differ:
        raise IntegrityError(f"challenge: builders disagree on {', '.join(v.name for v in differ)}")
    ctx.info(
        f"{sum(v.status.startswith('agree') for v in verdicts)} of {len(verdicts)} recipes agree; "
        f"{sum(v.status == 'missing' for v in verdicts)} held by no builder"
    )
    return 0


def cmd_provenance(ctx: Context) -> int:
    """The provenance the build here (or the remote it was pulled from) made for
    TARGET's current output; one made now, from the record, for a record built here
    before provenance existed."""
    from ..core.errors import UsageError
    from ..remote import provenance
    from ..store.store import Store

    graph, planned, _ = plan_targets(ctx, [ctx.args.target])
    item = next(i for i in planned if i.name == graph.targets[0])
    store = Store(ctx.cache_dir)
    record = store.read_record(item.key) if item.key and store.exists() else None
    if record is None:
        raise UsageError(
            f"{item.name}: its current inputs were not built in {store.root}; run lwrecipe build {item.name} first"
        )
    data = store.read_provenance(item.key)
    if data is None:
        pulled = store.pulled_from(item.key)
        if pulled is not None:
            raise UsageError(
                f"{item.name}: its output was pulled from {pulled}, which had no provenance for it; "
                f"rebuild it here (lwrecipe build {item.name} --check) to make one"
            )
        secret = project_settings(ctx, graph.recipes[item.name].root).secret
        store.put_provenance(item.key, provenance.envelope(record, graph.recipes[item.name], secret))
        data = store.read_provenance(item.key)
        assert data is not None
    _emit(
        ctx,
        json.dumps(json.loads(data), indent=2) + "\n",
        f"{item.name}: provenance of output {record.output_id[:12]}",
    )
    return 0


def _emit(ctx: Context, text: str, what: str) -> None:
    """A document to --out (saying so) or to standard output."""
    if ctx.args.out:
        Path(ctx.args.out).write_text(text)
        ctx.info(f"{what} written to {ctx.args.out}")
    else:
        sys.stdout.write(text)
