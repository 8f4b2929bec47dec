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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import best, paired, report, row
from lwrecipe.core.digests import Sha256
from lwrecipe.inputs.fetch import Downloader, Wanted, make_client
from lwrecipe.store.store import Store
from tests.servers import nginx_server

SIZE = int(os.environ.get("BENCH_FETCH_MIB", "512")) * 1024 * 1024


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

        t_ours, t_hashlib = paired(lambda: store.verify_blob("sources", sha), hashlib_run)
        t_sha256sum = best(lambda: subprocess.run(["sha256sum", str(blob)], check=True, capture_output=True))
        rows.append(
            row("source verification", "hashlib.file_digest", t_ours, t_hashlib, ">= 0.9x throughput", time_ratio=False)
        )
        rows.append(row("source verification", "sha256sum", t_ours, t_sha256sum, "(info)", time_ratio=False))

        with nginx_server(root / "nginx") as base:
            url = f"{base}/blob.bin"
            out = root / "curl.out"

            def ours() -> None:
                fresh = Store(root / "dl").ensure()
                shutil.rmtree(fresh.root / "sources")
                (fresh.root / "sources").mkdir()
                with make_client() as client:
                    Downloader(fresh, client).fetch(Wanted("bench", sha, (url,), "blob.bin"))

            t_dl, t_curl = paired(ours, lambda: subprocess.run(["curl", "-sSf", "-o", str(out), url], check=True))
        rows.append(row("download from nginx", "curl -o", t_dl, t_curl, ">= 0.8x throughput", time_ratio=False))
    return rows


if __name__ == "__main__":
    report(main())
