"""The build environment's cost: creating it from Debian's packages against apt and
dpkg doing the same, and a no-op build of a recipe on it.

Rows (measured in the same run; nothing passes or fails):
- download: `lwrecipe fetch buildenv` from Debian's archive into an empty cache
  against `apt-get download` of the same package versions (both over the network,
  4 connections for lwrecipe, apt's own for apt-get; best of BENCH_ENV_RUNS, default 2);
- unpack: every package unpacked into one tree, lwrecipe's extract_debs against
  `dpkg-deb -x` per package, both from local files;
- first creation: `lwrecipe build buildenv` from a local mirror (verify, unpack,
  the script, pack and store), against the same unpack by dpkg-deb plus `tar | zstd`
  of the tree (what storing it costs at least);
- no-op: `lwrecipe build examples/hello-wasm` when everything is cached (target 0.3 s).
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

from bench.common import best, paired, row  # noqa: E402
from lwrecipe.inputs.debs import extract_debs  # noqa: E402
from lwrecipe.recipes.recipe import load_recipe  # noqa: E402
from lwrecipe.recipes.schema import DebSource  # noqa: E402

RUNS = int(os.environ.get("BENCH_ENV_RUNS", "2"))
RECIPE = ROOT / "recipes" / "buildenv.toml"


def lwrecipe(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(
        [sys.executable, "-m", "lwrecipe", *args],
        cwd=ROOT,
        check=True,
        capture_output=True,
        env={**os.environ, **(env or {})},
    )


def main() -> list[dict]:
    debs = [s for s in load_recipe(RECIPE).doc.sources if isinstance(s, DebSource)]
    tmp = Path(tempfile.mkdtemp(dir=os.environ.get("BENCH_TMP"), prefix="bench-env-"))
    try:
        return _measure(debs, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _measure(debs: list[DebSource], tmp: Path) -> list[dict]:
    rows = []
    counter = iter(range(1000))

    def fresh() -> Path:
        path = tmp / f"run{next(counter)}"
        path.mkdir()
        return path

    # download, both from Debian's archive
    def ours_download() -> None:
        lwrecipe("--cache", str(fresh()), "-q", "fetch", "buildenv", env={"LWRECIPE_MIRRORS": ""})

    def apt_download() -> None:
        subprocess.run(
            ["apt-get", "download", "-qq", *[f"{d.deb}={d.version}" for d in debs]],
            cwd=fresh(),
            check=True,
            capture_output=True,
        )

    ours, ref = paired(ours_download, apt_download, runs=RUNS)
    # a local copy of the packages for the rest
    mirror = fresh()
    lwrecipe("--cache", str(mirror), "-q", "fetch", "buildenv")
    files = [mirror / "sources" / d.sha256 for d in debs]
    size = sum(f.stat().st_size for f in files)
    rows.append(row(f"env: download {len(debs)} debs, {size >> 20} MiB", "apt-get download", ours, ref, "report", True))

    def ours_unpack() -> None:
        root = fresh()
        extract_debs([(deb, root, deb.name) for deb in files])

    def dpkg_unpack() -> Path:
        root = fresh()
        for deb in files:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        return root

    ours, ref = paired(ours_unpack, dpkg_unpack, runs=RUNS)
    rows.append(row("env: unpack every package", "dpkg-deb -x each", ours, ref, "report", True))

    def ours_create() -> None:
        lwrecipe("--cache", str(fresh()), "-q", "build", "buildenv", env={"LWRECIPE_MIRRORS": str(mirror / "sources")})

    def dpkg_and_store() -> None:
        root = dpkg_unpack()
        subprocess.run(f"tar --sort=name -C {root} -cf - . | zstd -3 -T0 -q -o {root}.tar.zst", shell=True, check=True)

    ours, ref = paired(ours_create, dpkg_and_store, runs=RUNS)
    rows.append(row("env: first creation (local debs)", "dpkg-deb -x + tar|zstd", ours, ref, "report", True))

    # a fully cached build of a recipe on the environment
    cache = fresh()
    hello = str(ROOT / "examples" / "hello-wasm" / "hello-wasm.toml")
    lwrecipe("--cache", str(cache), "-q", "build", hello, env={"LWRECIPE_MIRRORS": str(mirror / "sources")})
    noop = best(lambda: lwrecipe("--cache", str(cache), "-q", "build", hello), runs=5)
    rows.append(row("env: no-op build of hello-wasm", "-", noop, None, "<= 0.3 s", True))
    return rows
