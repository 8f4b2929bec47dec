"""`serve`: a built site or a directory, with the headers SharedArrayBuffer needs (no link
out of it is followed: serve.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import EPILOG, Context


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="serve a built site (default: runtime) or a directory to a browser", epilog=EPILOG)
    p.add_argument(
        "target",
        nargs="?",
        default="runtime",
        metavar="TARGET|DIR",
        help="a built recipe's output (a recipe name wins over a directory of that name), "
        "or a directory (default: runtime)",
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(ctx: Context) -> int:
    import shutil
    import tempfile

    from ..core.errors import UsageError
    from ..recipes.graph import project_root
    from ..serve import make_server

    given = Path(ctx.args.target)
    tmp = None
    is_recipe = ctx.args.target.endswith(".toml") or (
        "/" not in ctx.args.target and (project_root(Path.cwd()) / "recipes" / f"{ctx.args.target}.toml").is_file()
    )
    if not is_recipe and given.is_dir():
        root, what = given.resolve(), str(given)
    else:
        from ..build.plan import plan_graph
        from ..build.status import StatusOracle
        from ..recipes.graph import load_graph
        from ..store.outputs import restore

        graph = load_graph([ctx.args.target])
        oracle = StatusOracle(ctx.cache_dir)
        item = next(p for p in plan_graph(graph, oracle.output_id) if p.name == graph.targets[0])
        record = oracle.store.read_record(item.key) if item.key else None
        if record is None or not oracle.store.has("cas", record.blob.sha256):
            raise UsageError(f"{item.name}: not built (run `lwrecipe build {item.name}` first)")
        tmp = Path(tempfile.mkdtemp(dir=oracle.store.ensure().root / "tmp", prefix="serve-"))
        root = tmp / "site"
        restore(oracle.store, record.blob.sha256, record.output_id, root)
        what = f"{item.name} {record.output_id[:12]}"
    try:
        server = make_server(root, ctx.args.host, ctx.args.port, quiet=ctx.verbosity < 1)
    except OSError as exc:
        raise UsageError(f"serve: cannot listen on {ctx.args.host}:{ctx.args.port}: {exc.strerror}") from None
    import signal

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    host, port = server.server_address[:2]
    assert isinstance(host, str)  # an AF_INET(6) address: (host, port, ...)
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
