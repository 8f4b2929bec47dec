"""Remote cache transfers against curl, and peak memory while moving 1 GiB.

Pull and push of one 1 GiB blob from/to a real nginx with WebDAV PUT, against
`curl -o` and `curl -T` on the same server and file. Peak RSS is measured in a
child process (os.wait4) for a pull and for packing a 1 GiB output tree.
Targets: >= 0.8x curl throughput; < 200 MiB peak RSS.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import RUNS, random_blob, row, settle, timed  # noqa: E402
from tests.servers import nginx_server  # noqa: E402

SIZE = int(os.environ.get("BENCH_TRANSFER_MIB", "1024")) << 20

PULL = """
import sys
from pathlib import Path
from lwrecipe.remote.config import RemoteSpec, Settings
from lwrecipe.inputs.fetch import Wanted
from lwrecipe.remote.remote import Remotes
from lwrecipe.store.store import Store
store = Store(Path(sys.argv[1])).ensure()
spec = RemoteSpec(url=sys.argv[2], name="bench")
with Remotes.open(store, Settings((spec,), None, {})) as remotes:
    backend = remotes.backends[0]
    remotes._downloader(backend).fetch(Wanted("bench", sys.argv[3], (backend.location("cas", sys.argv[3]),),
                                              "blob", kind="cas"))
"""

PUSH = """
import sys
from pathlib import Path
from lwrecipe.remote.config import RemoteSpec
from lwrecipe.inputs.fetch import NullReporter
from lwrecipe.remote.backends.opening import open_backend
backend = open_backend(RemoteSpec(url=sys.argv[1], name="bench"))
backend.upload("cas", sys.argv[2], Path(sys.argv[3]), NullReporter())
"""

ASK = """
import sys
from lwrecipe.remote.config import RemoteSpec
from lwrecipe.remote.backends.opening import open_backend
backend = open_backend(RemoteSpec(url=sys.argv[1], name="bench"))
assert not backend.exists("ac", sys.argv[2])
backend.close()
"""

PACK = """
import sys
from pathlib import Path
from lwrecipe.store.outputs import pack
from lwrecipe.store.store import Store
pack(Store(Path(sys.argv[1])).ensure(), Path(sys.argv[2]), 0)
"""


LAUNCH = """
import os, sys, time
start = time.perf_counter()
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), time.perf_counter() - start, usage.ru_maxrss)
"""


def run_measured(argv: list[str], cwd: Path | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one child process. A small launcher
    starts it: a child forked from this (large) process would count this
    process's pages in its peak RSS."""
    out = subprocess.run(
        [sys.executable, "-c", LAUNCH, *argv], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.split()
    if out[0] != "0":
        raise RuntimeError(f"{argv[:3]} failed with {out[0]}")
    return float(out[1]), int(out[2])


def main() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        www = root / "nginx" / "www"
        (www / "cas").mkdir(parents=True)
        blob = root / "blob.bin"
        sha = random_blob(blob, SIZE)
        os.link(blob, www / "cas" / sha)
        with nginx_server(root / "nginx") as base:
            out = root / "curl.out"
            peak = []

            def pull() -> float:
                cache = root / "pull-cache"
                subprocess.run(["rm", "-rf", str(cache)], check=True)
                seconds, rss = run_measured([sys.executable, "-c", PULL, str(cache), base, sha], cwd=ROOT)
                peak.append(rss)
                return seconds

            curls, pulls = [], []
            for _ in range(RUNS):  # in turn, so that drift in the machine's speed slows both alike
                settle()
                curls.append(
                    timed(lambda: subprocess.run(["curl", "-sSf", "-o", str(out), f"{base}/cas/{sha}"], check=True))
                )
                settle()
                pulls.append(pull())
            t_pull, t_curl = min(pulls), min(curls)
            out.unlink()
            rows.append(row("pull 1 GiB blob from nginx", "curl -o", t_pull, t_curl, ">= 0.9x throughput", False))
            rows.append(row("peak RSS pulling 1 GiB", "-", max(peak) / 1024, None, "< 200 MiB", True))
            rows[-1]["unit"] = "MiB"

            # Each upload goes to a name that does not exist yet: replacing the last
            # upload would free 1 GiB inside the timed window (about 0.13 s here).
            curls, pushes = [], []
            for n in range(RUNS):
                settle()
                curls.append(
                    timed(
                        lambda n=n: subprocess.run(
                            ["curl", "-sSf", "-T", str(blob), f"{base}/put-curl/{n}"], check=True
                        )
                    )
                )
                settle()
                pushes.append(
                    run_measured([sys.executable, "-c", PUSH, f"{base}/put-ours/{n}", sha, str(blob)], cwd=ROOT)[0]
                )
                shutil.rmtree(www / "put-curl")
                shutil.rmtree(www / "put-ours")
            t_push, t_curl_put = min(pushes), min(curls)
            # Opening a remote and asking for one key: a whole process, as `plan --remote`
            # pays it; python -c pass is the floor any Python command starts from.
            asks, floors = [], []
            for _ in range(RUNS * 4):
                floors.append(run_measured([sys.executable, "-c", "pass"], cwd=ROOT)[0])
                asks.append(run_measured([sys.executable, "-c", ASK, base, "0" * 64], cwd=ROOT)[0])
            rows.append(row("push 1 GiB blob to nginx", "curl -T", t_push, t_curl_put, ">= 0.8x throughput", False))
            rows.append(
                row(
                    "open a remote, HEAD one key (process)",
                    "python -c pass",
                    min(asks) * 1000,
                    min(floors) * 1000,
                    "<= 60 ms over the http.client client",
                    True,
                )
            )
            rows[-1]["unit"] = "ms"
        tree = root / "tree"
        tree.mkdir()
        os.link(blob, tree / "blob")
        subprocess.run(["rm", "-rf", str(root / "pull-cache")], check=True)
        _, rss = run_measured([sys.executable, "-c", PACK, str(root / "pack-cache"), str(tree)], cwd=ROOT)
        rows.append(row("peak RSS packing 1 GiB", "-", rss / 1024, None, "< 200 MiB", True))
        rows[-1]["unit"] = "MiB"
    return rows


if __name__ == "__main__":
    from bench.common import report

    report(main())
