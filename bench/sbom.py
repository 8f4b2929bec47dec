"""SBOM export of the real recipe set: CycloneDX 1.5 against SPDX 2.3, both as
`lwrecipe sbom runtime` runs them (process start, graph, entries, the document,
its validation). Target: CycloneDX within 1.5x of SPDX's time."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import best, row  # noqa: E402


def main() -> list[dict]:
    out = Path(tempfile.mkdtemp(dir=os.environ.get("BENCH_TMP"), prefix="bench-sbom-"))

    def sbom(fmt: str) -> None:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "lwrecipe",
                "--cache",
                str(out / "cache"),
                "sbom",
                "runtime",
                "--format",
                fmt,
                "--out",
                str(out / f"sbom.{fmt}"),
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )

    cdx = best(lambda: sbom("cyclonedx-json"), runs=5)
    spdx = best(lambda: sbom("spdx-json"), runs=5)
    return [row("sbom: CycloneDX 1.5 of runtime (8 recipes)", "SPDX 2.3 of the same", cdx, spdx, "<= 1.5x", True)]
