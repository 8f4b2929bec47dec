"""Store benchmarks: packing and restoring an output tree against tar and zstd,
and the wall time of a no-op `lwrecipe build` of a fully cached graph.

Prints ratios measured in the same run on the same data (no pass/fail). Targets:
pack+compress <= 1.0x `tar --sort=name ... | zstd -3 -T0`, restore <= 1.0x
`zstd -d | tar -x`, no-op build <= 0.3 s with interpreter start.
BENCH_STORE_MIB sets the tree size (default 800), BENCH_TMP where it is made.
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

from bench.common import best, paired, report, row  # noqa: E402
from lwrecipe.store.outputs import pack, restore  # noqa: E402
from lwrecipe.store.store import Store  # noqa: E402

SIZE = int(os.environ.get("BENCH_STORE_MIB", "800")) << 20
SAMPLES = ("/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/share/doc", "/usr/include")


def make_tree(dest: Path, size: int) -> int:
    """A toolchain-like tree: copies of this machine's binaries, libraries, headers
    and docs, in nested directories, with symlinks, up to `size` bytes."""
    samples = []
    for top in SAMPLES:
        for dirpath, _, files in os.walk(top):
            for name in files:
                path = Path(dirpath) / name
                if path.is_file() and not path.is_symlink() and os.access(path, os.R_OK):
                    samples.append(path)
    samples.sort()
    total, i = 0, 0
    while total < size:
        src = samples[i % len(samples)]
        target = dest / f"round{i // len(samples)}" / src.relative_to("/").parent / src.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        if i % 50 == 0:
            (target.parent / (src.name + ".link")).symlink_to(src.name)
        total += target.stat().st_size
        i += 1
    return total


STACK = ("llvm", "linux", "musl", "linux-headers", "busybox", "initramfs", "runtime")
DEPENDS = {
    "linux": ["llvm"],
    "musl": ["llvm"],
    "linux-headers": ["linux"],
    "busybox": ["musl", "linux-headers"],
    "initramfs": ["busybox"],
    "runtime": ["linux", "initramfs"],
}


TOOLCHAIN_MIB = int(os.environ.get("BENCH_TOOLCHAIN_MIB", "1024"))


def cached_graph(project: Path) -> Path:
    """A 7-recipe graph shaped like the real stack, with a ~1 GB toolchain output,
    built once into project/cache."""
    (project / "recipes").mkdir(parents=True)
    (project / "lwrecipe.toml").write_text("")
    for name in STACK:
        deps = ", ".join(f'"{d}"' for d in DEPENDS.get(name, []))
        size = TOOLCHAIN_MIB << 20 if name == "llvm" else 1 << 20
        (project / "recipes" / f"{name}.toml").write_text(
            f'schema = 1\n[package]\nname = "{name}"\nversion = "1"\nlicense = "MIT"\n'
            f'[build]\ndepends = [{deps}]\nhost_tools = ["mkdir", "head"]\n'
            f'script = \'mkdir -p "$LW_OUT" && head -c {size} /dev/urandom > "$LW_OUT/{name}"\'\n'
        )
    subprocess.run([sys.executable, "-m", "lwrecipe", "-q", "build", "runtime"], cwd=project, check=True)
    return project


def main() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        tree = root / "tree"
        total = make_tree(tree, SIZE)
        store = Store(root / "cache").ensure()
        print(f"tree: {total >> 20} MiB", file=sys.stderr)

        ref_blob = root / "ref.tar.zst"
        tar_cmd = (
            f"tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C {tree} -c . "
            f"| zstd -3 -T0 -q -f -o {ref_blob}"
        )
        packed = []
        t_pack, t_ref = paired(
            lambda: packed.append(pack(store, tree, 0)), lambda: subprocess.run(tar_cmd, shell=True, check=True)
        )
        rows.append(row("pack + compress", "tar --sort=name | zstd -3", t_pack, t_ref, "<= 1.0x time", True))

        out_ref, out_ours = root / "restore-ref", root / "restore-ours"

        def clean() -> None:
            shutil.rmtree(out_ref, ignore_errors=True)
            shutil.rmtree(out_ours, ignore_errors=True)
            out_ref.mkdir()

        p = packed[-1]
        t_restore, t_ref = paired(
            lambda: restore(store, p.blob, p.output_id, out_ours),
            lambda: subprocess.run(f"zstd -d -c -q {ref_blob} | tar -x -C {out_ref}", shell=True, check=True),
            before=clean,
        )
        rows.append(row("restore", "zstd -d | tar -x", t_restore, t_ref, "<= 1.0x time", True))
        clean()

        project = cached_graph(root / "project")
        argv = [sys.executable, "-m", "lwrecipe", "-q", "build", "runtime"]
        t_noop = best(lambda: subprocess.run(argv, cwd=project, check=True), runs=5)
        t_python = best(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), runs=5)
        rows.append(
            row(
                f"no-op build, 7 recipes, {TOOLCHAIN_MIB} MiB toolchain",
                "python -c pass",
                t_noop,
                t_python,
                "<= 0.3 s wall",
                True,
            )
        )
    return rows


if __name__ == "__main__":
    report(main())
