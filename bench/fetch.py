"""Fetch benchmarks: source verification against hashlib and sha256sum, download against curl.

Prints ratios measured in the same run on the same data (no pass/fail): targets are
verification >= 0.9x hashlib throughput and download >= 0.8x curl throughput.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lwrecipe.fetch import Downloader, Wanted, make_client  # noqa: E402
from lwrecipe.keys import Sha256  # noqa: E402
from lwrecipe.store import Store  # noqa: E402
from tests.servers import nginx_server  # noqa: E402

SIZE = int(os.environ.get("BENCH_FETCH_MIB", "512")) * 1024 * 1024


def timed(fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best(fn, runs: int = 3) -> float:  # noqa: ANN001
    return min(timed(fn) for _ in range(runs))


def main() -> list[dict[str, object]]:
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        www = root / "nginx" / "www"
        www.mkdir(parents=True)
        blob = www / "blob.bin"
        with blob.open("wb") as fh:
            for _ in range(SIZE // (8 << 20)):
                fh.write(os.urandom(8 << 20))
        with blob.open("rb") as fh:
            sha = Sha256(hashlib.file_digest(fh, "sha256").hexdigest())
        store = Store(root / "cache").ensure()
        shutil.copyfile(blob, store.path("sources", sha))

        def hashlib_run() -> None:
            with blob.open("rb") as fh:
                hashlib.file_digest(fh, "sha256")

        t_hashlib = best(hashlib_run)
        t_sha256sum = best(lambda: subprocess.run(["sha256sum", str(blob)], check=True, capture_output=True))
        t_ours = best(lambda: store.verify_blob("sources", sha))
        rows.append({"measure": "source verification", "reference": "hashlib.file_digest",
                     "ours_s": t_ours, "ref_s": t_hashlib, "ratio": t_hashlib / t_ours, "target": ">= 0.9x throughput"})
        rows.append({"measure": "source verification", "reference": "sha256sum",
                     "ours_s": t_ours, "ref_s": t_sha256sum, "ratio": t_sha256sum / t_ours, "target": "(info)"})

        with nginx_server(root / "nginx") as base:
            url = f"{base}/blob.bin"
            out = root / "curl.out"
            t_curl = best(lambda: subprocess.run(["curl", "-sSf", "-o", str(out), url], check=True))

            def ours() -> None:
                fresh = Store(root / "dl").ensure()
                shutil.rmtree(fresh.root / "sources")
                (fresh.root / "sources").mkdir()
                with make_client() as client:
                    Downloader(fresh, client).fetch(Wanted("bench", sha, (url,), "blob.bin"))

            t_dl = best(ours)
        rows.append({"measure": "download from nginx", "reference": "curl -o",
                     "ours_s": t_dl, "ref_s": t_curl, "ratio": t_curl / t_dl, "target": ">= 0.8x throughput"})
    return rows


def report(rows: list[dict[str, object]]) -> None:
    print(f"{'measure':<24} {'reference':<22} {'ours':>8} {'ref':>8} {'ratio':>7}  target")
    for r in rows:
        print(f"{r['measure']:<24} {r['reference']:<22} {r['ours_s']:>7.2f}s {r['ref_s']:>7.2f}s "
              f"{r['ratio']:>6.2f}x  {r['target']}")


if __name__ == "__main__":
    report(main())
