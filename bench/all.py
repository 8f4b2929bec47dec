"""Every benchmark in one run: one table of ratios, and bench/results.json.

Each module measures lwrecipe and its reference tool on the same data in the
same run; nothing here passes or fails. BENCH_TMP chooses where data is made
(default: /dev/shm when it exists, so disk noise does not dominate).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import env, execution, fetch, plan, reapi, sbom, store, transfer, userland  # noqa: E402
from bench.common import report  # noqa: E402

SUITES = {
    "fetch": fetch,
    "store": store,
    "plan": plan,
    "transfer": transfer,
    "env": env,
    "userland": userland,
    "sbom": sbom,
    "reapi": reapi,
    "execution": execution,
}


def main(names: list[str]) -> int:
    if "BENCH_TMP" not in os.environ and Path("/dev/shm").is_dir():
        os.environ["BENCH_TMP"] = "/dev/shm"
    rows = []
    for name in names or list(SUITES):
        print(f"running {name} ...", file=sys.stderr, flush=True)
        for r in SUITES[name].main():
            rows.append({"suite": name, **r})
    report(rows)
    out = ROOT / "bench" / "results.json"
    out.write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
