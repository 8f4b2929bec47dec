"""Planning cost on synthetic graphs of 100, 1,000 and 5,000 recipes.

Each recipe i depends on i-1 and i//2, so the last one's closure is the whole
graph. Times `lwrecipe plan` (interpreter start included) and fits the growth
exponent of time against graph size on a log-log scale. Target: <= 2 s at
1,000 recipes and growth close to linear (exponent near 1).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import best, report, row

SIZES = tuple(int(n) for n in os.environ.get("BENCH_PLAN_SIZES", "100,1000,5000").split(","))


def make_graph(root: Path, n: int) -> None:
    (root / "recipes").mkdir(parents=True)
    (root / "lwrecipe.toml").write_text("")
    for i in range(n):
        deps = sorted({f"r{i - 1}", f"r{i // 2}"} - {f"r{i}"}) if i else []
        dep_list = ", ".join(f'"{d}"' for d in deps)
        (root / "recipes" / f"r{i}.toml").write_text(
            f'schema = 1\n[package]\nname = "r{i}"\nversion = "1.{i}"\nlicense = "MIT"\n'
            f'[build]\ndepends = [{dep_list}]\nhost_tools = ["mkdir"]\nenv = {{ N = "{i}" }}\n'
            f'script = \'mkdir -p "$LW_OUT" && echo {i} > "$LW_OUT/n"\'\n'
        )


def fitted_exponent(points: list[tuple[int, float]]) -> float:
    xs = [math.log(n) for n, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def main() -> list[dict]:
    rows, points = [], []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        for n in SIZES:
            root = Path(tmp) / f"g{n}"
            make_graph(root, n)
            argv = [sys.executable, "-m", "lwrecipe", "--cache", str(root / "cache"), "plan", f"r{n - 1}"]
            seconds = best(
                lambda argv=argv, root=root: subprocess.run(argv, cwd=root, check=True, capture_output=True), runs=3
            )
            points.append((n, seconds))
            rows.append(
                row(f"plan, {n} recipes", "-", seconds, None, "<= 2 s" if n == 1000 else "(growth)", time_ratio=True)
            )
    if len(points) > 1:
        exponent = fitted_exponent(points)
        rows.append(row("plan growth exponent", "-", exponent, None, "close to 1 (linear)", time_ratio=True))
        rows[-1]["unit"] = "exponent"
    return rows


if __name__ == "__main__":
    report(main())
