"""A graph shaped like the real stack, built for real: toolchain wrapper -> libc-like
static library and headers -> program with a two-patch series -> packed image.

Covers cache hits without build processes, parallel builds, --keep-going,
--check, a corrupt dependency output, kill -9 during a build and during
packing, and concurrent builds on one cache.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, Project, run_subprocess
from tests.integration.test_build import tarball
from tests.servers import fault_server

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]

WRAPPER = b'#!/bin/sh\nexec cc -ffile-prefix-map=/build/src=. -I"$LW_DEP_HEADERS/include" "$@"\n'
MINI_C = b"int mini_add(int a, int b) { return a + b; }\n"
MINI_H = b"int mini_add(int a, int b);\n"
PROG_C = (
    b'#include <stdio.h>\n#include <mini.h>\nint main(void) {\n  printf("%d\\n", mini_add(1, 2));\n  return 0;\n}\n'
)
PATCH_1 = """--- a/prog.c
+++ b/prog.c
@@ -1,6 +1,6 @@
 #include <stdio.h>
 #include <mini.h>
 int main(void) {
-  printf("%d\\n", mini_add(1, 2));
+  printf("sum %d\\n", mini_add(1, 2));
   return 0;
 }
"""
PATCH_2 = """--- a/prog.c
+++ b/prog.c
@@ -1,6 +1,6 @@
 #include <stdio.h>
 #include <mini.h>
 int main(void) {
-  printf("sum %d\\n", mini_add(1, 2));
+  printf("sum %d\\n", mini_add(40, 2));
   return 0;
 }
"""


def source(served, project: Project, name: str, files: dict[str, bytes]) -> str:
    data = tarball(files, top=f"{name}-1.0")
    url = served.add(f"/{name}-1.0.tar.gz", data)
    return f'[[sources]]\nurl = "{url}"\nsha256 = "{hashlib.sha256(data).hexdigest()}"\nstrip = 1\n'


def recipe(name: str, sources: str, depends: list[str], tools: list[str], script: str, extra: str = "") -> str:
    deps = ", ".join(f'"{d}"' for d in depends)
    tls = ", ".join(f'"{t}"' for t in tools)
    return (
        f'schema = 1\n[package]\nname = "{name}"\nversion = "1.0"\nlicense = "MIT"\n{sources}{extra}\n'
        f"[build]\ndepends = [{deps}]\nhost_tools = [{tls}]\nscript = '''\n{script}\n'''\n"
    )


CC = ["cc", "as", "ld", "mkdir", "cp", "sleep"]


def write_stack(project: Project, served, headers_script: str | None = None) -> None:
    project.recipe(
        "toolchain",
        recipe(
            "toolchain",
            source(served, project, "toolchain", {"lw-cc": WRAPPER}),
            [],
            ["mkdir", "cp", "chmod"],
            'mkdir -p "$LW_OUT/bin"\ncp lw-cc "$LW_OUT/bin/lw-cc"\nchmod 0755 "$LW_OUT/bin/lw-cc"',
        ),
    )
    project.recipe(
        "headers",
        recipe(
            "headers",
            source(served, project, "headers", {"mini.h": MINI_H}),
            ["toolchain"],
            CC,
            headers_script or 'sleep 1\nmkdir -p "$LW_OUT/include"\ncp mini.h "$LW_OUT/include/"',
        ),
    )
    project.recipe(
        "libc",
        recipe(
            "libc",
            source(served, project, "libc", {"mini.c": MINI_C}),
            ["toolchain"],
            CC + ["ar"],
            'sleep 1\nmkdir -p "$LW_OUT/lib"\ncc -O2 -c mini.c -o mini.o\nar rcD "$LW_OUT/lib/libmini.a" mini.o',
        ),
    )
    project.file("patches/program/0001-say-sum.patch", PATCH_1)
    project.file("patches/program/0002-answer.patch", PATCH_2)
    project.recipe(
        "program",
        recipe(
            "program",
            source(served, project, "program", {"prog.c": PROG_C}),
            ["toolchain", "libc", "headers"],
            CC + ["sh"],
            'mkdir -p "$LW_OUT/bin"\n'
            '"$LW_DEP_TOOLCHAIN/bin/lw-cc" -O2 -o "$LW_OUT/bin/prog" prog.c "$LW_DEP_LIBC/lib/libmini.a"',
            extra='[[patches]]\nfile = "patches/program/0001-say-sum.patch"\n'
            '[[patches]]\nfile = "patches/program/0002-answer.patch"\n',
        ),
    )
    project.file("tools/initramfs.py", (REPO / "lwrecipe" / "initramfs.py").read_bytes())
    project.recipe(
        "image",
        recipe(
            "image",
            '[[sources]]\npath = "tools/initramfs.py"\ndest = "tools"\n',
            ["program"],
            ["python3", "mkdir", "cp"],
            'mkdir -p "$TMPDIR/root/bin"\ncp "$LW_DEP_PROGRAM/bin/prog" "$TMPDIR/root/bin/prog"\n'
            'python3 tools/initramfs.py --root "$TMPDIR/root" --out "$LW_OUT/image.cpio.gz" '
            "--device dev/console:c:5:1:600 --dir proc",
        ),
    )


@pytest.fixture
def served():
    with fault_server() as srv:
        yield srv


@pytest.fixture
def stack(project, served):
    write_stack(project, served)
    return project


def build(project: Project, *args: str, cache: str = "cache"):
    return run_subprocess("--cache", str(project.root / cache), "build", *args, cwd=project.root)


def records(project: Project, cache: str = "cache") -> dict[str, dict]:
    out = {}
    for path in (project.root / cache / "ac").iterdir():
        rec = json.loads(path.read_text())
        out[rec["name"]] = rec
    return out


def verify_clean(project: Project, cache: str = "cache") -> None:
    result = run_subprocess("--cache", str(project.root / cache), "cache", "verify", cwd=project.root)
    assert result.code == 0 and "0 corrupt quarantined" in result.err, result.err


def test_stack_builds_in_parallel_then_is_all_cache_hits(stack) -> None:
    first = build(stack, "image", "-j", "2")
    assert first.code == 0, first.err
    assert "5 built, 0 cached" in first.err
    lines = first.err.splitlines()
    started = [i for i, line in enumerate(lines) if line in ("libc: building", "headers: building")]
    finished = [i for i, line in enumerate(lines) if line.startswith(("libc: built", "headers: built"))]
    assert len(started) == 2 and max(started) < min(finished), first.err  # both ran at once
    out = stack.root / "out"
    assert (
        run_subprocess("--cache", str(stack.root / "cache"), "checkout", "program", str(out), cwd=stack.root).code == 0
    )
    assert subprocess.run([out / "bin" / "prog"], capture_output=True, text=True).stdout == "sum 42\n"
    image = Path(run_checkout(stack, "image")) / "image.cpio.gz"
    listing = subprocess.run(
        ["cpio", "-itv"], input=gzip.decompress(image.read_bytes()), capture_output=True
    ).stdout.decode()
    assert "bin/prog" in listing and "dev/console" in listing

    second = build(stack, "image", "-j", "2")
    assert second.code == 0 and "0 built, 5 cached" in second.err
    assert "building" not in second.err and "fetching" not in second.err


def run_checkout(project: Project, name: str) -> str:
    dest = project.root / f"co-{name}"
    assert (
        run_subprocess("--cache", str(project.root / "cache"), "checkout", name, str(dest), cwd=project.root).code == 0
    )
    return str(dest)


def test_fully_cached_build_spawns_no_process(stack) -> None:
    assert build(stack, "image").code == 0
    trace = stack.root / "trace"
    code = (
        f"import sys, os, subprocess\nsys.argv = ['lwrecipe', '--cache', {str(stack.root / 'cache')!r}, 'build', 'image']\n"
        "spawned = []\n"
        "orig = subprocess.Popen.__init__\n"
        "def spy(self, *a, **k):\n    spawned.append(a[0] if a else k.get('args'))\n    return orig(self, *a, **k)\n"
        "subprocess.Popen.__init__ = spy\n"
        "from lwrecipe.cli import main\ncode = main()\n"
        f"open({str(trace)!r}, 'w').write(repr(spawned))\nsys.exit(code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=stack.root, capture_output=True, text=True)
    assert proc.returncode == 0 and "0 built, 5 cached" in proc.stderr, proc.stderr
    assert trace.read_text() == "[]"


def test_two_caches_at_different_times_give_identical_outputs(stack) -> None:
    assert build(stack, "image", cache="c1").code == 0
    time.sleep(1.1)
    assert build(stack, "-j", "2", "image", cache="c2").code == 0
    one, two = records(stack, "c1"), records(stack, "c2")
    assert {n: r["output_id"] for n, r in one.items()} == {n: r["output_id"] for n, r in two.items()}


def test_keep_going_builds_what_does_not_depend_on_a_failure(project, served) -> None:
    write_stack(project, served, headers_script='echo "headers: broken" >&2\nexit 3')
    stopped = build(project, "image")
    assert stopped.code == 1 and "headers: broken" in stopped.err
    assert "not started" in stopped.err
    going = build(project, "image", "--keep-going")
    assert going.code == 1
    states = {
        line.split()[0]: line.split()[1]
        for line in going.err.splitlines()
        if len(line.split()) >= 2 and line.split()[0] in ("toolchain", "libc", "headers", "program", "image")
    }
    assert states["libc"] in ("built", "cached") and states["headers"] == "failed"
    assert states["program"] == "skipped" and states["image"] == "skipped"
    assert set(records(project)) == {"toolchain", "libc"}


def test_corrupt_dependency_output_is_rebuilt_not_used(stack) -> None:
    assert build(stack, "program").code == 0
    libc = records(stack)["libc"]
    blob = stack.root / "cache" / "cas" / libc["blob"]["sha256"]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    prog = stack.root / "recipes" / "program.toml"
    prog.write_text(prog.read_text().replace("-O2 -o", "-O1 -o"))  # program must build again
    result = build(stack, "program")
    assert result.code == 0, result.err
    assert "libc: rebuilding" in result.err and "program: built" in result.err
    assert records(stack)["libc"]["output_id"] == libc["output_id"]
    verify_clean(stack)


def test_check_catches_a_nondeterministic_build(project, served) -> None:
    src = source(served, project, "clock", {"x": b"x"})
    project.recipe(
        "clock",
        recipe(
            "clock",
            src,
            [],
            ["mkdir", "date"],
            'mkdir -p "$LW_OUT"\necho stable > "$LW_OUT/same"\ndate +%N > "$LW_OUT/stamp"',
        ),
    )
    project.recipe("steady", recipe("steady", src, [], ["mkdir"], 'mkdir -p "$LW_OUT"\necho ok > "$LW_OUT/ok"'))
    assert build(project, "steady", "--check").code == 0
    assert build(project, "steady", "--check").code == 0
    assert build(project, "clock").code == 0
    result = build(project, "clock", "--check")
    assert result.code == 3, result.err
    assert "error: clock: not reproducible" in result.err
    assert "stamp: file 0644 10 bytes" in result.err and "-" in result.err and "+" in result.err
    assert "same" not in result.err.replace("same:", "")  # only the differing file is listed
    assert "rebuilt output kept as cas/" in result.err


def spawn_build(project: Project, target: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-I", "-m", "lwrecipe", "--cache", str(project.root / "cache"), "build", target],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(predicate, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.005)


def kill_and_recover(project: Project, target: str, moment) -> None:
    proc = spawn_build(project, target)
    try:
        wait_for(lambda: moment() or proc.poll() is not None)
        assert proc.poll() is None, "the build finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (project.root / "cache" / "ac").exists() or not list((project.root / "cache" / "ac").iterdir())
    verify_clean(project)
    again = build(project, target)
    assert again.code == 0 and "1 built" in again.err, again.err
    verify_clean(project)


def test_kill_during_build_leaves_no_record(project, served) -> None:
    src = source(served, project, "slow", {"x": b"x"})
    project.recipe(
        "slow",
        recipe(
            "slow",
            src,
            [],
            ["mkdir", "sleep", "touch"],
            'mkdir -p "$LW_OUT"\ntouch "$LW_OUT/started"\nsleep 2\necho done > "$LW_OUT/f"',
        ),
    )
    tmp = project.root / "cache" / "tmp"
    kill_and_recover(
        project, "slow", lambda: any((p / "work" / "out" / "started").exists() for p in tmp.glob("build-slow-*"))
    )


def test_kill_during_packing_leaves_no_record(project, served) -> None:
    src = source(served, project, "big", {"x": b"x"})
    project.recipe(
        "big",
        recipe(
            "big",
            src,
            [],
            ["mkdir", "head"],
            'mkdir -p "$LW_OUT"\nfor i in 1 2 3 4; do head -c 50000000 /dev/urandom > "$LW_OUT/r$i"; done',
        ),
    )
    tmp = project.root / "cache" / "tmp"

    def packing() -> bool:
        try:
            written = any((p / "work" / "out" / "r4").stat().st_size == 50000000 for p in tmp.glob("build-big-*"))
            return written and any(p.stat().st_size > 0 for p in tmp.glob("stage-*"))
        except FileNotFoundError:
            return False

    kill_and_recover(project, "big", packing)


def test_four_concurrent_builds_build_once(stack) -> None:
    procs = [spawn_build(stack, "program") for _ in range(4)]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _ in results), results
    for name in ("toolchain", "headers", "libc", "program"):  # each key built by exactly one process
        assert sum(f"{name}: built" in err for _, err in results) == 1, results
    assert sum(int(re.search(r"(\d+) built, (\d+) cached", err).group(1)) for _, err in results) == 4
    verify_clean(stack)
