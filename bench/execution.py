"""Remote execution: the time from `lwrecipe build --executor` to the first action
running, against a local build of the same recipe, same run.

A farm is started here as the tests start one (BuildGrid with its scheduler in a
private PostgreSQL, the test bot running buildbox-run). The recipe builds on the
pinned environment and writes the time its script started; each run changes the
script so nothing is cached. Rows (best of BENCH_RUNS; reported, not gated):
- warm: the environment already in the server's CAS (the usual case: it is
  content-addressed and uploaded once);
- cold: the first run against an empty CAS, which uploads the environment (and,
  on this fresh client, first pulls the environment's output from a directory remote).
Reference: `lwrecipe build` here, from the same start to its script running.
The environment is built first (from Debian's archive) unless BENCH_ENV_STORE
names a store that has it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import RUNS, row, settle  # noqa: E402
from tests.servers import buildgrid_execution, postgres_server, reapi_bot  # noqa: E402

RECIPE = """schema = 1
[package]
name = "probe"
version = "1"
license = "MIT"
[build]
environment = "buildenv"
script = '''
date +%s.%N > "$LW_OUT/started"
: run {n} of {token}
'''
"""


TOKEN = uuid.uuid4().hex  # no run of this bench finds an earlier one's build cached


def lwrecipe(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "lwrecipe", *args], cwd=cwd, check=True, capture_output=True)


def to_first_script(project: Path, store: Path, n: int, *args: str) -> float:
    """Seconds from starting `lwrecipe build` to the build script running."""
    (project / "recipes" / "probe.toml").write_text(RECIPE.format(n=n, token=TOKEN))
    settle()
    start = time.time()
    lwrecipe("--cache", str(store), "build", *args, "probe", cwd=project)
    out = project / f"out-{n}"
    lwrecipe("--cache", str(store), "checkout", "probe", str(out), cwd=project)
    return float((out / "started").read_text()) - start


def main() -> list[dict]:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        project = root / "project"
        (project / "recipes").mkdir(parents=True)
        (project / "recipes" / "buildenv.toml").write_bytes((ROOT / "recipes" / "buildenv.toml").read_bytes())
        env_store = Path(os.environ.get("BENCH_ENV_STORE", root / "env-store"))
        lwrecipe("--cache", str(env_store), "build", "buildenv", cwd=project)
        local = [to_first_script(project, env_store, n) for n in range(RUNS)]
        with (
            postgres_server() as database,
            buildgrid_execution(root / "buildgrid", database) as url,
            reapi_bot(url, root / "bot", capacity=1),
        ):
            remote = ["--remote", str(env_store), "--no-verify-signatures", "--executor", url]
            store = root / "remote-store"  # a client's: its first run also pulls the environment's output
            cold = to_first_script(project, store, RUNS, *remote)
            warm = [to_first_script(project, store, RUNS + 1 + n, *remote) for n in range(RUNS)]
    return [
        row("first action running, env in CAS", "lwrecipe build here", min(warm), min(local), "(info)", True),
        row("first action running, empty CAS", "lwrecipe build here", cold, min(local), "(info)", True),
    ]


if __name__ == "__main__":
    for r in main():
        print(r)
