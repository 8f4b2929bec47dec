"""The command line: argument parsing and output only.

Each command calls the library and formats what it returns; errors arrive as
LwrecipeError and leave as one `error: <where>: <what>` line per problem with
the documented exit status. Any other exception is a bug in lwrecipe: one
`error: internal error: …` line, exit 1 (LWRECIPE_TRACEBACK=1 adds the
traceback). One module per command group adds its parsers.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from .. import __version__
from ..core.errors import LwrecipeError
from . import build, cache, completion, debs, keys, mirror, plan, release, serve, shell
from .common import EPILOG, Context, say_error

TRACEBACK_ENV = "LWRECIPE_TRACEBACK"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lwrecipe", epilog=EPILOG, description="Pinned, reproducible recipes for Linux on WebAssembly."
    )
    parser.add_argument("--version", action="version", version=f"lwrecipe {__version__}")
    parser.add_argument(
        "--cache",
        metavar="DIR",
        help="local cache directory (default: $LWRECIPE_CACHE, else cache/ at the project root "
        "(the directory holding lwrecipe.toml), else the user cache)",
    )
    parser.add_argument(
        "--accept-project-config",
        action="store_true",
        help="apply every setting of the project's lwrecipe.toml, those only your own config may set "
        "included (credentials, keys, push, git mirrors, places outside the project); "
        "docs/remote.md",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="say more")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="say less")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    for group in (plan, build, cache, release, serve, keys, debs, mirror, shell, completion):
        group.add_parsers(sub)
    parser.set_defaults(root_parser=parser)  # for `completion`, which is generated from it
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "takes_command", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra  # `shell TARGET -- CMD...`
    try:
        status: int = args.func(Context(args))
        return status
    except LwrecipeError as exc:
        for line in exc.lines():
            say_error(line)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a file system failure outside the paths that report their own
        where = f"{exc.filename}: " if exc.filename else ""
        say_error(f"{where}{exc.strerror or exc}")
        return 1
    except Exception as exc:  # the last resort: a bug in lwrecipe, one line and not a traceback
        if os.environ.get(TRACEBACK_ENV) == "1":
            traceback.print_exc()
        say_error(
            f"internal error: {type(exc).__name__}: {exc} (a bug in lwrecipe; {TRACEBACK_ENV}=1 prints the traceback)"
        )
        return 1
