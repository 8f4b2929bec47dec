"""`key generate`: ed25519 keys for signing build records."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import EPILOG, Context


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("key", help="signing keys for build records", epilog=EPILOG)
    key_sub = p.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    kg = key_sub.add_parser("generate", help="write a new ed25519 secret key; print its public key", epilog=EPILOG)
    kg.add_argument("name", metavar="NAME", help="the key's name, as it appears in trusted_keys")
    kg.add_argument("--out", required=True, metavar="FILE", help="secret key file to create (mode 0600)")
    kg.set_defaults(func=cmd_key_generate)


def cmd_key_generate(ctx: Context) -> int:
    from ..remote.signing import generate

    public = generate(ctx.args.name, Path(ctx.args.out))
    ctx.out(public.text())
    ctx.info(f"secret key written to {ctx.args.out} (mode 0600); add the line above to trusted_keys")
    return 0
