"""`plan`, `show` and `graph`: what would be built, one resolved recipe, the dependency graph."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from .common import EPILOG, Context, load_targets, plan_targets, remote_args, substitute_args, table, target_args

if TYPE_CHECKING:
    from ..build.plan import Planned


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("plan", help="build order, keys and status", epilog=EPILOG)
    target_args(p)
    substitute_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    remote_args(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("show", help="print a resolved recipe", epilog=EPILOG)
    target_args(p, many=False)
    substitute_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("graph", help="print the dependency graph", epilog=EPILOG)
    target_args(p, many=False)
    substitute_args(p)
    p.add_argument("--dot", action="store_true", help="Graphviz output")
    p.set_defaults(func=cmd_graph)


def _key_cell(item: Planned) -> str:
    if item.missing_tools:
        return "missing tool: " + ", ".join(item.missing_tools)
    if item.key is None:
        return "after " + ", ".join(item.waiting_on)
    return item.key[:12]


def cmd_plan(ctx: Context) -> int:
    graph, planned, oracle = plan_targets(ctx, ctx.args.targets)
    rows: list[dict[str, Any]] = [
        {
            "name": p.name,
            "version": p.recipe.version,
            "key": p.key,
            "status": oracle.status(p),
            "depends": list(p.recipe.depends),
            "missing_tools": list(p.missing_tools),
            "waiting_on": list(p.waiting_on),
            "built_on": p.recipe.built_on,
            "recipe": p.recipe.display,
            "substituted": p.name in graph.substituted,
        }
        for p in planned
    ]
    if ctx.args.json:
        ctx.out(json.dumps(rows, indent=2))
        return 0
    table(
        ctx,
        [
            ("NAME", "VERSION", "KEY", "ON", "STATUS"),
            *[
                (r["name"] + ("*" if r["substituted"] else ""), r["version"], _key_cell(p), r["built_on"], r["status"])
                for r, p in zip(rows, planned, strict=True)
            ],
        ],
    )
    for name in sorted(graph.substituted):
        ctx.out(f"* {name}: from {graph.recipes[name].display} (--with-recipe), not the project's recipe")
    return 0


def cmd_show(ctx: Context) -> int:
    from .show import describe

    graph, planned, _ = plan_targets(ctx, [ctx.args.target])
    item = next(p for p in planned if p.name == graph.targets[0])
    doc = describe(item)
    if ctx.args.json:
        ctx.out(json.dumps(doc, indent=2))
    else:
        from .show import render_text

        ctx.out(render_text(doc))
    return 0


def cmd_graph(ctx: Context) -> int:
    graph = load_targets(ctx, [ctx.args.target])
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
