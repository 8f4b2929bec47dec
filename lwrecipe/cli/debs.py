"""`debs resolve|update`: pin a recipe's Debian packages with apt's own resolver."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .common import EPILOG, Context, target_args

if TYPE_CHECKING:
    from ..recipes.schema import DebianRequest


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("debs", help="pin a recipe's Debian packages (a build environment)", epilog=EPILOG)
    debs_sub = p.add_subparsers(dest="debs_command", metavar="ACTION", required=True)
    r = debs_sub.add_parser(
        "resolve",
        help="resolve packages and their dependencies on an empty system and write every pin into the recipe",
        epilog=EPILOG,
    )
    target_args(r, many=False)
    r.add_argument("packages", nargs="+", metavar="PKG", help="Debian package names")
    r.add_argument("--arch", metavar="ARCH", help="Debian architecture (default: apt's own)")
    r.add_argument(
        "--on",
        metavar="ENV",
        help="an environment recipe whose packages count as installed: only "
        "what it lacks is pinned (a recipe built on that environment)",
    )
    r.set_defaults(func=cmd_debs_resolve)
    u = debs_sub.add_parser(
        "update",
        help="resolve the recipe's [debian] packages again with the current indices (run `apt-get update` first)",
        epilog=EPILOG,
    )
    target_args(u, many=False)
    u.set_defaults(func=cmd_debs_update)


def _pin(ctx: Context, target: str, request: DebianRequest) -> int:
    from ..core.errors import UsageError
    from ..inputs.debpins import write_pins
    from ..inputs.debs import DebPin, resolve
    from ..recipes.graph import dependency_path, load_graph

    graph = load_graph([target])
    recipe = graph.recipes[graph.targets[0]]
    installed = []
    if request.on:
        from ..recipes.schema import DebSource

        env = load_graph([str(dependency_path(recipe, request.on))]).recipes[request.on]
        installed = [
            DebPin(s.deb, s.version, s.arch, s.url, s.sha256, 0) for s in env.doc.sources if isinstance(s, DebSource)
        ]
        if not installed:
            raise UsageError(f"{recipe.display}: debian.on: {env.display} pins no Debian packages")
    pins = resolve(request.packages, request.arch, installed)
    changes = write_pins(recipe.path, request, pins)
    for change in changes:
        ctx.out(change.text())
    ctx.info(
        f"{recipe.display}: {len(pins)} packages"
        + (f", {len(changes)} pins changed" if changes else ", no pin changed")
    )
    return 0


def cmd_debs_resolve(ctx: Context) -> int:
    from ..recipes.schema import DebianRequest

    return _pin(ctx, ctx.args.target, DebianRequest(packages=ctx.args.packages, arch=ctx.args.arch, on=ctx.args.on))


def cmd_debs_update(ctx: Context) -> int:
    from ..inputs.debpins import request_of
    from ..recipes.graph import load_graph

    graph = load_graph([ctx.args.target])
    return _pin(ctx, ctx.args.target, request_of(graph.recipes[graph.targets[0]].path))
