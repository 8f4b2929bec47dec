"""What every command shares: the parsed global options and their output (Context),
the arguments several commands take, and opening remotes and planning targets.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.config.files import PROJECT_FILE
from ..core.errors import redact
from ..core.terminal import printable

if TYPE_CHECKING:
    from ..build.plan import Planned
    from ..build.status import StatusOracle
    from ..inputs.fetch import Reporter
    from ..inputs.mirrors import Mirrors
    from ..inputs.web import Client
    from ..recipes.graph import Graph
    from ..remote.config import Settings
    from ..remote.remote import Remotes

CACHE_ENV = "LWRECIPE_CACHE"
EPILOG = "Exit status: 0 success; 1 a build or command failed; 2 usage or recipe error; 3 integrity failure."


class Context:
    """What every command gets: the parsed global options."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.verbosity = args.verbose - args.quiet
        self.accept_project_config: bool = getattr(args, "accept_project_config", False)
        self._warned: set[str] = set()
        self._configs: dict[Path, list[tuple[Path, Any]]] = {}

    @cached_property
    def cache_dir(self) -> Path:
        """--cache, else $LWRECIPE_CACHE, else cache/ of the project (wherever in it the
        command runs), else the user's cache directory, said once."""
        given = self.args.cache or os.environ.get(CACHE_ENV)
        if given:
            return Path(given).absolute()
        project = next((p for p in [Path.cwd(), *Path.cwd().parents] if (p / PROJECT_FILE).is_file()), None)
        if project is not None:
            return project / "cache"
        import platformdirs

        store = platformdirs.user_cache_path("lwrecipe") / "store"
        self.info(f"note: no {PROJECT_FILE} here or above; using the user cache {store}")
        return store

    def out(self, text: str = "") -> None:
        print(printable(text))

    def info(self, text: str) -> None:
        if self.verbosity >= 0:
            say(text)

    def config_files(self, project: Path) -> list[tuple[Path, Any]]:
        """The project's and the user's config (core/config/files.py config_files), read
        once per command however many settings are asked of them."""
        if project not in self._configs:
            from ..core.config.files import config_files

            self._configs[project] = config_files(
                project, dict(os.environ), self.accept_project_config, self.warn_once
            )[0]
        return self._configs[project]

    def warn_once(self, text: str) -> None:
        """A `warning:` line, said once however often a command meets its cause."""
        if text not in self._warned:
            self._warned.add(text)
            self.info(f"warning: {text}")


def say(text: str) -> None:
    """A message on stderr as a terminal may show it: no password of a URL, no
    control character of a recipe, a remote or a build's output (terminal.py)."""
    print(printable(redact(text)), file=sys.stderr)


def say_error(line: str) -> None:
    """One `error: <where>: <what>` line on stderr."""
    say(f"error: {line}")


def target_args(p: argparse.ArgumentParser, many: bool = True) -> None:
    p.add_argument(
        "targets" if many else "target",
        nargs="+" if many else None,
        metavar="TARGET",
        help="a recipe file (recipes/busybox.toml) or a recipe name (busybox)",
    )


def substitute_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--with-recipe",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="use the recipe FILE for NAME wherever the targets' graph names it, instead of the "
        "project's (a stand-in; plan shows it, build records note it; repeatable)",
    )


def load_targets(ctx: Context, targets: Sequence[str]) -> Graph:
    """The targets' graph, with the command's --with-recipe substitutions."""
    from ..recipes.graph import load_graph, parse_substitutes

    graph = load_graph(targets, substitutes=parse_substitutes(getattr(ctx.args, "with_recipe", None) or []))
    for name in graph.unused:
        ctx.info(f"warning: --with-recipe {name}: no recipe of the targets is or depends on {name!r}")
    return graph


def remote_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--remote",
        action="append",
        metavar="URL",
        help="a remote cache (repeatable; replaces LWRECIPE_REMOTES and the configured ones)",
    )
    p.add_argument(
        "--no-verify-signatures",
        action="store_true",
        help="use remote records no trusted key signed (said in the output)",
    )


def project_settings(
    ctx: Context, root: Path, remotes: list[str] | None = None, executor: str | None = None
) -> Settings:
    """The remotes and keys of the project at `root` and of the user (what of the
    project's config applies: --accept-project-config, core/config/acceptance.py)."""
    from ..remote.config import load_settings

    return load_settings(root, remotes, executor=executor, accept=ctx.accept_project_config, warn=ctx.warn_once)


def project_client(ctx: Context, root: Path | None = None) -> Client:
    """The HTTP client for a recipe's downloads (the user's `[network]`; the project's
    at `root` only when accepted)."""
    from ..remote.config import download_client

    return download_client(root, accept=ctx.accept_project_config, warn=ctx.warn_once)


def project_mirrors(ctx: Context, root: Path) -> Mirrors:
    """The mirror settings of the environment, the project at `root` and the user."""
    from ..remote.config import load_mirrors

    return load_mirrors(root, accept=ctx.accept_project_config, warn=ctx.warn_once)


def open_remotes(
    ctx: Context, settings: Settings, verify: bool, offline: bool = False, reporter: Reporter | None = None
) -> Remotes:
    from ..remote.remote import Remotes
    from ..store.store import Store

    if not verify:
        for spec in settings.remotes:
            ctx.info(f"warning: --no-verify-signatures: records from {spec.name} are used without signature checks")
    return Remotes.open(Store(ctx.cache_dir), settings, verify_signatures=verify, reporter=reporter, offline=offline)


def plan_targets(ctx: Context, targets: Sequence[str]) -> tuple[Graph, list[Planned], StatusOracle]:
    from ..build.plan import plan_graph
    from ..build.status import StatusOracle

    graph = load_targets(ctx, targets)
    remote_urls = getattr(ctx.args, "remote", None)
    remotes = None
    if hasattr(ctx.args, "no_verify_signatures"):
        settings = project_settings(ctx, graph.recipes[graph.targets[0]].root, remote_urls)
        if settings.remotes:
            remotes = open_remotes(ctx, settings, not ctx.args.no_verify_signatures)
    oracle = StatusOracle(ctx.cache_dir, remotes, warn=lambda text: ctx.info(f"warning: {text}"))
    try:
        return graph, plan_graph(graph, oracle.output_id), oracle
    finally:
        if remotes is not None:
            remotes.close()


def table(ctx: Context, rows: list[tuple[str, ...]]) -> None:
    """Left-aligned columns; the last one is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        ctx.out("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])


def lockfile_path(ctx: Context, given: str | None) -> Path:
    from ..audit.lockfile import LOCKFILE
    from ..recipes.graph import project_root

    return Path(given) if given else project_root(Path.cwd()) / LOCKFILE
