"""The Wasm userland chain on real inputs: what lwrecipe costs on a real build.

The chain is the one tests/integration/test_real_inputs.py builds: musl,
linux-headers, BusyBox 1.36.1 and the initramfs, with the llvm and linux
stand-ins (docs/linux-wasm.md), from ../shared/upstream through a mirror config.

Rows (measured in the same run; nothing passes or fails):
- cold: `lwrecipe build recipes/initramfs.toml --with-recipe ...` into a cache
  that already holds the environment and the two stand-ins (they are inputs
  here, not the chain), against the same four steps done by hand the way
  upstream's linux-wasm.sh does them (tar, patch -p1, musl's configure and make,
  cp + patch of the headers, BusyBox's make, cp + find | cpio -A + gzip) with the
  same compiler, on the host, no sandbox, no cache: lwrecipe's overhead on real
  compiles. Wall time and the peak resident memory of the largest process;
- no-op: the same build again, everything cached, against `make` in BusyBox's
  already built tree finding nothing to do.

BENCH_USERLAND_RUNS (default 1) sets how many times the cold pair runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import best, row  # noqa: E402

RUNS = int(os.environ.get("BENCH_USERLAND_RUNS", "1"))
UPSTREAM = ROOT.parent / "shared" / "upstream"
LINUX_WASM = "https://github.com/joelseverin/linux-wasm.git"
REV = "970e08b0d605e63e36a99d22596e8899a1dab8b5"
BUSYBOX_TAG = "busybox-1.36.1-git-tag.tar.bz2"
BUSYBOX_TAG_SHA256 = "0cf4f52a37154d5a53d6a79b58ea92a8c51256a675b87a3016c62c2320806b95"
APT_ARCHIVES = Path("/var/cache/apt/archives")


def measured(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and the peak resident memory (bytes) of the largest process of
    the command's tree that it waited for (wait4's ru_maxrss)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}...: exit {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss * 1024


REFERENCE = r"""
set -eu
in="$1"; work="$2"; llvm="$3"; linux="$4"; lw="$work/linux-wasm"
mkdir -p "$work/src" "$work/install"
tar -xf "$in/linux-wasm.tar" -C "$work" --one-top-level=linux-wasm
# musl, as build-musl does (in-tree here, as the recipe)
mkdir -p "$work/src/musl" && tar -xzf "$in/musl.tar.gz" -C "$work/src/musl" --strip-components=1
(cd "$work/src/musl" && patch -p1 -s < "$lw/patches/musl/0001-NOMERGE-Hacks-to-get-Linux-Wasm-to-compile-minimal-a.patch" \
  && CC="$llvm/bin/clang" CROSS_COMPILE="$llvm/bin/llvm-" \
     CFLAGS="--target=wasm32-unknown-unknown -Xclang -target-feature -Xclang +atomics -Xclang -target-feature -Xclang +bulk-memory -fPIC -Wl,-shared" \
     LIBCC=--rtlib=compiler-rt ./configure --target=wasm --prefix=/ --disable-shared >/dev/null \
  && make -s -j"$(nproc)" >/dev/null && DESTDIR="$work/install/musl" make -s install >/dev/null)
# build-busybox-kernel-headers
mkdir -p "$work/install/busybox-kernel-headers"
cp -R "$linux/include/." "$work/install/busybox-kernel-headers"
(cd "$work/install/busybox-kernel-headers" && patch -p1 -s < "$lw/patches/busybox-kernel-headers/busybox-kernel-headers-for-musl.patch")
# build-busybox
mkdir -p "$work/src/busybox" "$work/build/busybox" && tar -xjf "$in/busybox.tar.bz2" -C "$work/src/busybox" --strip-components=1
cd "$work/src/busybox" && patch -p1 -s < "$lw/patches/busybox/0001-NOMERGE-Hacks-to-build-Wasm-Linux-arch-minimal-and-i.patch"
for cmd in wasm_defconfig "-j$(nproc)" install; do
  make -s "O=$work/build/busybox" ARCH=wasm "CONFIG_PREFIX=$work/install/busybox" "CROSS_COMPILE=$llvm/bin/" \
    "CONFIG_SYSROOT=$work/install/musl" CONFIG_EXTRA_CFLAGS="-isystem $work/install/busybox-kernel-headers -D__linux__ -fPIC" \
    $cmd >/dev/null
done
# build-initramfs
mkdir -p "$work/install/initramfs"
cp "$lw/patches/initramfs/initramfs-base.cpio" "$work/install/initramfs/initramfs.cpio"
(cd "$work/install/busybox" && find . -print0 | cpio --null -o --format=newc -A -O "$work/install/initramfs/initramfs.cpio" 2>/dev/null)
(cd "$lw/patches/initramfs" && echo ./init | cpio -o --format=newc -A -O "$work/install/initramfs/initramfs.cpio" 2>/dev/null)
gzip "$work/install/initramfs/initramfs.cpio"
"""


def main() -> list[dict]:
    if not (UPSTREAM / "linux-wasm.git").is_dir() or not (UPSTREAM / "sources" / BUSYBOX_TAG).is_file():
        print(f"userland: skipped ({UPSTREAM} does not hold the real inputs)", file=sys.stderr)
        return []
    tmp = Path(tempfile.mkdtemp(dir=os.environ.get("BENCH_TMP"), prefix="bench-userland-"))
    try:
        return _measure(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _measure(tmp: Path) -> list[dict]:
    clone = tmp / "linux-wasm.git"
    shutil.copytree(UPSTREAM / "linux-wasm.git", clone, symlinks=True)
    tagged = tmp / "tag-archives"
    tagged.mkdir()
    (tagged / BUSYBOX_TAG).symlink_to(UPSTREAM / "sources" / BUSYBOX_TAG)
    (tagged / "SHA256SUMS").write_text(f"{BUSYBOX_TAG_SHA256}  {BUSYBOX_TAG}\n")
    config = tmp / "config.toml"
    files = [str(APT_ARCHIVES), str(UPSTREAM / "sources"), str(tagged)]
    config.write_text(f'[mirrors]\nfiles = {files!r}\ngit = {{ "{LINUX_WASM}" = ["{clone}"] }}\n'.replace("'", '"'))
    real = (ROOT / "recipes" / "busybox.toml").read_text()
    busybox = tmp / "busybox-tag" / "busybox.toml"
    busybox.parent.mkdir()
    busybox.write_text(
        real.replace(
            "https://busybox.net/downloads/busybox-1.36.1.tar.bz2",
            "https://git.busybox.net/busybox/snapshot/busybox-1_36_1.tar.bz2",
        ).replace("b8cc24c9574d809e7279c3be349795c5d5ceb6fdf19ca709f80cde50e47de314", BUSYBOX_TAG_SHA256)
    )
    subs = [
        "--with-recipe",
        "llvm=standins/llvm.toml",
        "--with-recipe",
        "linux=standins/linux.toml",
        "--with-recipe",
        f"busybox={busybox}",
    ]
    env = {**os.environ, "LWRECIPE_CONFIG": str(config)}
    base = tmp / "base"  # the environment and the stand-ins, built once: inputs of the chain
    lw = [sys.executable, "-m", "lwrecipe"]
    subprocess.run(
        [*lw, "--cache", str(base), "-q", "build", "llvm", "linux", *subs],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*lw, "--cache", str(base), "-q", "fetch", "initramfs", *subs],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    inputs = tmp / "inputs"
    inputs.mkdir()
    for name in ("llvm", "linux"):
        subprocess.run(
            [*lw, "--cache", str(base), "-q", "checkout", name, str(inputs / name), *subs],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
    sources = base / "sources"
    tree = (base / "refs" / f"git-{REV}").read_text().strip()
    shutil.copyfile(sources / tree, inputs / "linux-wasm.tar")
    shutil.copyfile(
        sources / "a9a118bbe84d8764da0ea0d28b3ab3fae8477fc7e4085d90102b8596fc7c75e4", inputs / "musl.tar.gz"
    )
    shutil.copyfile(sources / BUSYBOX_TAG_SHA256, inputs / "busybox.tar.bz2")

    ours: list[tuple[float, int]] = []
    ref: list[tuple[float, int]] = []
    for i in range(RUNS):
        cache = tmp / f"cache{i}"
        shutil.copytree(base, cache, symlinks=True)
        ref_work = tmp / f"ref{i}"
        ref.append(
            measured(
                [
                    "bash",
                    "-c",
                    REFERENCE,
                    "ref",
                    str(inputs),
                    str(ref_work),
                    str(inputs / "llvm"),
                    str(inputs / "linux"),
                ],
                ROOT,
                dict(os.environ),
            )
        )
        ours.append(measured([*lw, "--cache", str(cache), "-q", "build", "initramfs", *subs], ROOT, env))
    (t_ours, m_ours), (t_ref, m_ref) = min(ours), min(ref)
    rows = [row("userland: cold build (4 recipes)", "upstream's steps by hand", t_ours, t_ref, "report", True)]
    rows.append(
        {
            **row(
                "userland: cold build peak memory",
                "upstream's steps by hand",
                m_ours / 2**20,
                m_ref / 2**20,
                "report",
                True,
            ),
            "unit": "MiB",
        }
    )
    cache = tmp / "cache0"
    noop = best(lambda: measured([*lw, "--cache", str(cache), "-q", "build", "initramfs", *subs], ROOT, env), runs=5)
    make_noop = best(
        lambda: subprocess.run(
            [
                "make",
                "-s",
                f"O={tmp / 'ref0' / 'build' / 'busybox'}",
                "ARCH=wasm",
                f"CROSS_COMPILE={inputs / 'llvm' / 'bin'}/",
                f"CONFIG_SYSROOT={tmp / 'ref0' / 'install' / 'musl'}",
                f"CONFIG_EXTRA_CFLAGS=-isystem {tmp / 'ref0' / 'install' / 'busybox-kernel-headers'} -D__linux__ -fPIC",
            ],
            cwd=tmp / "ref0" / "src" / "busybox",
            check=True,
            capture_output=True,
        ),
        runs=5,
    )
    rows.append(row("userland: no-op build (all cached)", "make in built busybox", noop, make_noop, "<= 0.3 s", True))
    return rows
