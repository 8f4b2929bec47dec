"""A REAPI server (BuildGrid, disk CAS) against nginx as a remote cache, same run.

Push and pull of one 1 GiB blob by lwrecipe over grpc:// (ByteStream) and over
http:// (nginx WebDAV), each a whole process, taken in turn, best of
BENCH_RUNS. Before each REAPI push the blob is removed from BuildGrid's storage
(it deduplicates by digest); each nginx push goes to a new name. Reported, not
gated (issue #23 asks for the comparison).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import RUNS, random_blob, row, settle  # noqa: E402
from bench.transfer import PUSH, run_measured  # noqa: E402
from tests.servers import buildgrid_server, nginx_server  # noqa: E402

SIZE = int(os.environ.get("BENCH_TRANSFER_MIB", "1024")) << 20

PULL = """
import sys
from pathlib import Path
from lwrecipe.remote.config import RemoteSpec, Settings
from lwrecipe.inputs.fetch import Wanted
from lwrecipe.remote.remote import Remotes
from lwrecipe.store.store import Store
store = Store(Path(sys.argv[1])).ensure()
with Remotes.open(store, Settings((RemoteSpec(url=sys.argv[2], name="bench"),), None, {})) as remotes:
    backend = remotes.backends[0]
    if hasattr(backend, "download"):
        backend.download(store, sys.argv[3], int(sys.argv[4]), int(sys.argv[4]))
    else:
        remotes._downloader(backend).fetch(Wanted("bench", sys.argv[3], (backend.location("cas", sys.argv[3]),),
                                                  "blob", kind="cas"))
"""


def main() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        blob = root / "blob.bin"
        sha = random_blob(blob, SIZE)
        www = root / "nginx" / "www"
        (www / "cas").mkdir(parents=True)
        os.link(blob, www / "cas" / sha)
        with nginx_server(root / "nginx") as http, buildgrid_server(root / "buildgrid") as (grpc, cas):
            stored = cas / "cas" / "objects" / sha[:2] / sha[2:]
            pushes: dict[str, list[float]] = {"grpc": [], "http": []}
            pulls: dict[str, list[float]] = {"grpc": [], "http": []}
            for n in range(RUNS):
                stored.unlink(missing_ok=True)
                settle()
                pushes["grpc"].append(run_measured([sys.executable, "-c", PUSH, grpc, sha, str(blob)], cwd=ROOT)[0])
                settle()
                pushes["http"].append(
                    run_measured([sys.executable, "-c", PUSH, f"{http}/put-{n}", sha, str(blob)], cwd=ROOT)[0]
                )
                shutil.rmtree(www / f"put-{n}", ignore_errors=True)
                for kind, url in (("grpc", grpc), ("http", http)):
                    cache = root / f"pull-{kind}"
                    shutil.rmtree(cache, ignore_errors=True)
                    settle()
                    pulls[kind].append(
                        run_measured([sys.executable, "-c", PULL, str(cache), url, sha, str(SIZE)], cwd=ROOT)[0]
                    )
                    shutil.rmtree(cache, ignore_errors=True)
    rows.append(
        row(
            "push 1 GiB over REAPI (BuildGrid)",
            "lwrecipe to nginx",
            min(pushes["grpc"]),
            min(pushes["http"]),
            "(info)",
            False,
        )
    )
    rows.append(
        row(
            "pull 1 GiB over REAPI (BuildGrid)",
            "lwrecipe from nginx",
            min(pulls["grpc"]),
            min(pulls["http"]),
            "(info)",
            False,
        )
    )
    return rows
