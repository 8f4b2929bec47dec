"""`lock`, `why`, `audit` and `sbom`: what a release is made of and whether it holds."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from ..recipes.graph import Graph


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    from ..audit.lockfile import LOCKFILE, fetch_first_use_pins, write
    from ..audit.relock import relock
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
    made = relock(graph, ctx.cache_dir, path, keep_others=bool(ctx.args.targets))
    if ctx.args.check:
        if not made.current:
            raise IntegrityError(f"{path}: out of date for {', '.join(made.changed())} (run `lwrecipe lock`)")
        ctx.info(f"{path}: up to date ({len(made.entries)} recipes)")
        return 0
    if not made.current:
        write(path, made.text)
    ctx.info(f"{path}: {'unchanged' if made.current else 'written'} ({len(made.entries)} recipes)")
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


def _why_remote(ctx: Context, graph: Graph) -> int:
    """`why TARGET --remote R`: this machine's inputs against each remote's newest
    record of TARGET, and down through the dependencies its record names."""
    from ..audit.why import Why, against_remotes
    from ..store.store import Store

    name = graph.targets[0]
    settings = project_settings(ctx, graph.recipes[name].root, ctx.args.remote)
    documents = []
    why = Why(graph, Store(ctx.cache_dir), None)  # this machine's side, worked out once for every remote
    with open_remotes(ctx, settings, not ctx.args.no_verify_signatures) as remotes:
        for found in against_remotes(why, remotes, name, ask_use=not ctx.args.json):
            documents.append({"remote": found.remote, **found.reason.document()})
            if ctx.args.json:
                continue
            if not found.same:
                for line in found.reason.lines():
                    ctx.out(line)
            else:
                assert found.reason.other_key is not None  # the same inputs: a record was found
                same = f"{name}: the same inputs as the newest record on {found.label} (key {found.reason.other_key[:12]}…)"
                if found.unused is not None:
                    same += f", which is not used here: {found.unused}"
                ctx.out(same)
    if ctx.args.json:
        ctx.out(json.dumps(documents, indent=2))
    return 0


def cmd_audit(ctx: Context) -> int:
    from ..audit.audit import audit, render_tree
    from ..audit.lockfile import locked_graph, read
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
        locked_graph(lock, root, lambda text: ctx.info(f"warning: {text}")),
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
    from ..audit.challenge import LOCAL, REBUILD, challenge, rebuild_outputs
    from ..core.digests import is_sha256
    from ..core.errors import IntegrityError
    from ..store.store import Store

    graph = load_targets(ctx, ctx.args.targets)
    store = Store(ctx.cache_dir)
    settings = project_settings(ctx, graph.recipes[graph.targets[0]].root, ctx.args.remote)
    rebuilt = None
    if ctx.args.rebuild:
        from .build import engine_fetch

        rebuilt = rebuild_outputs(
            graph, store, engine_fetch(ctx, graph), lambda name, state: ctx.info(f"{name}: {state}")
        )
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
    from ..build.attestation import attestation
    from ..store.store import Store

    graph, planned, _ = plan_targets(ctx, [ctx.args.target])
    item = next(i for i in planned if i.name == graph.targets[0])
    made = attestation(Store(ctx.cache_dir), item, lambda: project_settings(ctx, item.recipe.root).secret)
    _emit(
        ctx,
        json.dumps(json.loads(made.envelope), indent=2) + "\n",
        f"{made.name}: provenance of output {made.output_id[:12]}",
    )
    return 0


def _emit(ctx: Context, text: str, what: str) -> None:
    """A document to --out (saying so) or to standard output."""
    if ctx.args.out:
        Path(ctx.args.out).write_text(text)
        ctx.info(f"{what} written to {ctx.args.out}")
    else:
        sys.stdout.write(text)
