"""The real recipes on the real upstream inputs of ../shared/upstream, reached the way
an air-gapped user reaches them: through lwrecipe's mirror settings (a config
file's `[mirrors]`: the musl release tarball from its directory, the pinned
linux-wasm commit from a local clone), the recipes copied byte for byte.

What is not obtainable here is stood in for, by a recipe of the same name whose
description says "stand-in" (docs/linux-wasm.md, "Tested here"):

- llvm: Debian's clang-16, lld-16 and llvm-16 from the pinned build environment,
  wrapped under the names the recipes call (LLVM 18.1.2's tarball is not here);
- linux: Debian's linux-libc-dev uapi headers laid out as `headers_install` lays
  them out, and an empty Wasm module as vmlinux.wasm (Linux 6.4.16 is not here);
- busybox: an install tree of the shape `make install` makes (BusyBox 1.36.1's
  release tarball is not here, and musl cannot be linked into it by clang-16).

musl, linux-headers, initramfs and runtime are the real recipes.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser import chromium, page_result
from tests.conftest import REPO, run_subprocess, upstream

LINUX_WASM = "https://github.com/joelseverin/linux-wasm.git"
REV = "970e08b0d605e63e36a99d22596e8899a1dab8b5"
REAL = ("buildenv", "musl", "linux-headers", "initramfs", "runtime")

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap missing")

STAND_INS = {
    "llvm": '''schema = 1
[package]
name = "llvm"
version = "16.0.6"
license = "Apache-2.0 WITH LLVM-exception"
description = "stand-in for LLVM 18.1.2: Debian's clang-16, lld-16 and llvm-16 under the names the recipes call"
[build]
environment = "buildenv"
host_tools = ["clang-16", "wasm-ld-16", "llvm-ar-16", "llvm-ranlib-16", "llvm-nm-16", "llvm-strip-16", "mkdir",
              "chmod"]
script = \'\'\'
mkdir -p "$LW_OUT/bin"
for pair in clang:clang-16 clang++:clang++-16 wasm-ld:wasm-ld-16 llvm-ar:llvm-ar-16 llvm-ranlib:llvm-ranlib-16 \\
            llvm-nm:llvm-nm-16 llvm-strip:llvm-strip-16 llvm-objcopy:llvm-objcopy-16; do
  printf '#!/bin/sh\\nexec %s "$@"\\n' "${pair#*:}" > "$LW_OUT/bin/${pair%%:*}"
  chmod 0755 "$LW_OUT/bin/${pair%%:*}"
done
\'\'\'
''',
    "linux": '''schema = 1
[package]
name = "linux"
version = "6.1"
license = "GPL-2.0-only WITH Linux-syscall-note"
description = "stand-in for Linux 6.4.16: Debian's linux-libc-dev uapi headers as headers_install lays them out, and an empty Wasm module"
[build]
environment = "buildenv"
host_tools = ["cp", "mkdir", "printf"]
script = \'\'\'
mkdir -p "$LW_OUT/include"
for d in asm-generic linux misc mtd rdma sound video xen; do
  cp -R "/usr/include/$d" "$LW_OUT/include/$d"
done
cp -R /usr/include/x86_64-linux-gnu/asm "$LW_OUT/include/asm"
printf '\\000asm\\001\\000\\000\\000' > "$LW_OUT/vmlinux.wasm"
\'\'\'
''',
    "busybox": '''schema = 1
[package]
name = "busybox"
version = "1.36.1"
license = "GPL-2.0-only"
description = "stand-in for BusyBox 1.36.1: an install tree of the shape make install makes"
[build]
environment = "buildenv"
host_tools = ["mkdir", "ln", "printf"]
script = \'\'\'
cd "$LW_OUT"
mkdir -p bin sbin usr/bin usr/sbin
printf '\\000asm\\001\\000\\000\\000' > bin/busybox
for a in sh ash cat ls mount echo; do ln -s busybox "bin/$a"; done
for a in init mdev; do ln -s ../bin/busybox "sbin/$a"; done
for a in env head; do ln -s ../../bin/busybox "usr/bin/$a"; done
ln -s bin/busybox linuxrc
\'\'\'
''',
}


BUSYBOX_TAG = "busybox-1.36.1-git-tag.tar.bz2"
BUSYBOX_TAG_SHA256 = "0cf4f52a37154d5a53d6a79b58ea92a8c51256a675b87a3016c62c2320806b95"


def busybox_source() -> str:
    """The real busybox recipe with its tarball swapped for BusyBox's 1_36_1 git tag
    archive (the release tarball's bytes are not here) and a build that keeps the
    patched files: its patch step, the real one, runs on the real sources."""
    real = (REPO / "recipes" / "busybox.toml").read_text()
    url = re.search(r'^url = "(.*)"$', real, re.M).group(1)  # type: ignore[union-attr]
    sha = re.search(r'^sha256 = "(.*)"$', real, re.M).group(1)  # type: ignore[union-attr]
    text = real[:real.index("[build]")].replace('name = "busybox"', 'name = "busybox-source"')
    text = text.replace(url, "https://git.busybox.net/busybox/snapshot/busybox-1_36_1.tar.bz2")
    return text.replace(sha, BUSYBOX_TAG_SHA256) + '''[build]
environment = "buildenv"
host_tools = ["cp", "mkdir"]
script = \'\'\'
mkdir -p "$LW_OUT/configs" "$LW_OUT/arch/wasm" "$LW_OUT/init"
cp "$LW_SRC/configs/wasm_defconfig" "$LW_OUT/configs/"
cp "$LW_SRC/arch/wasm/Makefile" "$LW_OUT/arch/wasm/"
cp "$LW_SRC/init/init.c" "$LW_OUT/init/"
\'\'\'
'''


def git_show(path: str) -> bytes:
    return subprocess.run(["git", "-c", "safe.directory=*", "--git-dir", str(upstream("linux-wasm.git")), "show",
                           f"{REV}:{path}"], capture_output=True, check=True).stdout


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, deb_mirror: dict[str, str]):
    """A project holding the real recipes byte for byte and the stand-ins, with a user
    config whose [mirrors] serve the real inputs; yields (project root, environment)."""
    root = tmp_path_factory.mktemp("real")
    (root / "lwrecipe.toml").write_text("")
    (root / "recipes").mkdir()
    for name in REAL:
        shutil.copyfile(REPO / "recipes" / f"{name}.toml", root / "recipes" / f"{name}.toml")
    for name, text in STAND_INS.items():
        (root / "recipes" / f"{name}.toml").write_text(text)
    (root / "lwrecipe").mkdir()
    shutil.copyfile(REPO / "lwrecipe" / "initramfs.py", root / "lwrecipe" / "initramfs.py")
    (root / "recipes" / "busybox-source.toml").write_text(busybox_source())
    clone = root / "linux-wasm.git"  # a copy the running user owns (git refuses others' repositories)
    shutil.copytree(upstream("linux-wasm.git"), clone, symlinks=True)
    sources = upstream("sources/musl-1.2.5.tar.gz").parent
    tagged = root / "tag-archives"  # BusyBox's tag archive, found by its sha256 through a checksum index
    tagged.mkdir()
    (tagged / BUSYBOX_TAG).symlink_to(sources / BUSYBOX_TAG)
    (tagged / "SHA256SUMS").write_text(f"{BUSYBOX_TAG_SHA256}  {BUSYBOX_TAG}\n")
    config = root / "config.toml"
    config.write_text(f'[mirrors]\nfiles = ["{sources}", "{tagged}"]\n'
                      f'git = {{ "{LINUX_WASM}" = ["{clone}"] }}\n')
    yield root, {"LWRECIPE_CONFIG": str(config), **deb_mirror}


def build(stack, *targets: str, cache: str = "cache"):  # noqa: ANN001
    root, env = stack
    result = run_subprocess("--cache", str(root / cache), "build", *targets, cwd=root, env=env)
    assert result.code == 0, result.err
    return result


def checkout(stack, target: str, dest: Path, cache: str = "cache") -> Path:  # noqa: ANN001
    root, env = stack
    result = run_subprocess("--cache", str(root / cache), "checkout", target, str(dest), cwd=root, env=env)
    assert result.code == 0, result.err
    return dest


def output_ids(stack, cache: str = "cache") -> dict[str, str]:  # noqa: ANN001
    root, _ = stack
    return {(r := json.loads(p.read_text()))["name"]: r["output_id"] for p in (root / cache / "ac").iterdir()}


def test_every_patch_the_real_recipes_name_comes_from_the_pinned_commit(stack) -> None:
    """fetch reads each patch from the linux-wasm tree it got from the local clone
    (the git mirror of the config file) and prints its sha256: the same bytes as
    the file at the pinned commit."""
    import hashlib

    from lwrecipe.recipes.graph import load_graph
    from lwrecipe.recipes.recipe import SourcePatch

    root, env = stack
    result = run_subprocess("--cache", str(root / "cache"), "fetch", "runtime", "musl", "linux-headers", cwd=root,
                            env=env)
    assert result.code == 0, result.err
    assert re.search(rf"git {REV[:12]} .* {re.escape(str(root / 'linux-wasm.git'))}$", result.out, re.M), result.out
    printed = dict(re.findall(r"^(\S+: patches\[\d+\]): sha256 ([0-9a-f]{64})$", result.out, re.M))
    graph = load_graph([str(REPO / "recipes" / "runtime.toml"), str(REPO / "recipes" / "musl.toml"),
                        str(REPO / "recipes" / "busybox.toml")])
    named = {f"{r.name}: patches[{i}]": p.path for r in graph.recipes.values() for i, p in enumerate(r.doc.patches)
             if isinstance(p, SourcePatch)}
    assert len(named) == 12 + 1 + 1 + 1  # kernel series, musl, busybox, llvm
    for label, path in named.items():
        if label.split(":")[0] in ("musl",):
            assert printed[label] == hashlib.sha256(git_show(path)).hexdigest()
        else:
            assert git_show(path), path  # exists at the pinned commit


def test_the_real_busybox_patch_applies_to_busybox_1_36_1(stack) -> None:
    """The busybox recipe's patch entry, unchanged, applied by the build's patch step
    to BusyBox 1.36.1 (its git tag archive): wasm_defconfig and the Wasm arch exist."""
    build(stack, "busybox-source")
    root, _ = stack
    out = checkout(stack, "busybox-source", root / "busybox-source-out")
    defconfig = (out / "configs" / "wasm_defconfig").read_text()
    assert "CONFIG_FEATURE_COMPRESS_USAGE=y" in defconfig  # why the busybox recipe needs bzip2 and dd
    assert (out / "arch" / "wasm" / "Makefile").exists()


def test_musl_for_wasm32_from_the_real_tarball_and_patch_is_bit_identical_in_two_stores(stack) -> None:
    """The unchanged musl recipe, its patch applied by the build's own patch step,
    Debian's clang-16 standing in for LLVM 18.1.2 (the one difference): lib/libc.a
    of wasm32 objects, the same output id in two stores."""
    build(stack, "musl")
    build(stack, "musl", cache="cache2")
    first, second = output_ids(stack), output_ids(stack, "cache2")
    assert first["musl"] == second["musl"] and first["llvm"] == second["llvm"]
    root, _ = stack
    musl = checkout(stack, "musl", root / "musl-out")
    headers = subprocess.run(["llvm-readobj-16", "--file-headers", str(musl / "lib" / "libc.a")],
                             capture_output=True, text=True, check=True).stdout
    formats = re.findall(r"^Format: (\S+)$", headers, re.M)
    arches = set(re.findall(r"^Arch: (\S+)$", headers, re.M))
    assert len(formats) > 1000 and set(formats) == {"WASM"} and arches == {"wasm32"}, (len(formats), arches)
    # the patch is in: its wasm arch directory is what --target=wasm configured
    assert (musl / "include" / "bits" / "syscall.h").is_file()


def test_the_real_headers_patch_applies_inside_a_real_uapi_tree(stack) -> None:
    """The real linux-headers script applies upstream's busybox-kernel-headers patch
    (fuzz 0) to a uapi tree laid out as headers_install makes it (Debian's
    linux-libc-dev standing in for 6.4.16's)."""
    build(stack, "linux-headers")
    root, _ = stack
    out = checkout(stack, "linux-headers", root / "headers-out")
    linux = checkout(stack, "linux", root / "linux-out")
    patch = git_show("patches/busybox-kernel-headers/busybox-kernel-headers-for-musl.patch").decode()
    touched = sorted(set(re.findall(r"^\+\+\+ b/(\S+)", patch, re.M)))
    assert "linux/if_ether.h" in touched
    for rel in touched:
        assert (out / "include" / rel).is_file(), rel
    assert (out / "include" / "linux" / "if_ether.h").read_bytes() != (linux / "include" / "linux" / "if_ether.h").read_bytes()
    assert (out / "include" / "linux" / "libc-compat.h").read_bytes() != (
        linux / "include" / "linux" / "libc-compat.h").read_bytes()


def cpio_entries(data: bytes) -> list[tuple[str, str, str]]:
    """(name, mode string, device numbers or '') of each entry, as GNU cpio lists them."""
    listing = subprocess.run(["cpio", "-itv", "--quiet", "--numeric-uid-gid"], input=data, capture_output=True,
                             check=True, env={"TZ": "UTC", "LC_ALL": "C", "PATH": "/usr/bin:/bin"}).stdout.decode()
    rows = []
    for line in listing.splitlines():
        cols = line.split()
        name = cols[-3] if cols[0].startswith("l") else cols[-1]
        rows.append((name, cols[0], " ".join(cols[4:6]) if cols[0][0] in "cb" else ""))
    return rows


def test_the_initramfs_is_upstreams_base_then_busybox_then_upstreams_init(stack) -> None:
    build(stack, "initramfs")
    root, _ = stack
    image = checkout(stack, "initramfs", root / "initramfs-out") / "initramfs.cpio.gz"
    raw = image.read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\0\0\0\0"  # gzip, no timestamp
    ours = cpio_entries(gzip.decompress(raw))
    base = cpio_entries(git_show("patches/initramfs/initramfs-base.cpio"))
    assert ours[:len(base)] == base  # name, type, mode and device numbers, one by one
    assert ("dev/console", "crw-r--r--", "5, 1") in base
    busybox = checkout(stack, "busybox", root / "busybox-out")
    tree = sorted(p.relative_to(busybox).as_posix() for p in busybox.rglob("*"))
    assert [name for name, _, _ in ours[len(base):-1]] == [".", *tree]
    assert ours[-1] == ("init", "-rwxr-xr-x", "")
    extracted = root / "initramfs-x"
    extracted.mkdir()
    subprocess.run(["cpio", "-id", "--quiet", "--no-preserve-owner"], input=gzip.decompress(raw), cwd=extracted,
                   capture_output=True)
    assert (extracted / "init").read_bytes() == git_show("patches/initramfs/init")
    assert b"exec /sbin/init -s" in (extracted / "init").read_bytes()
    assert {"bin", "dev", "etc", "home", "mnt", "proc", "sys", "usr"} <= {p.name for p in extracted.iterdir()}


class Served:
    def __init__(self, argv: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        match = re.search(r"(http://\S+/)", line)
        assert match, line + self.proc.stderr.read()  # type: ignore[union-attr]
        self.url = match.group(1)

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


PROBE = """<!DOCTYPE html>
<script src="linux.js"></script>
<pre id="result"></pre>
<script>
(async () => {
  const r = {crossOriginIsolated: window.crossOriginIsolated, linux: typeof linux};
  try {
    r.sab = new SharedArrayBuffer(4).byteLength;
    const vmlinux = await WebAssembly.compileStreaming(fetch("vmlinux.wasm"));
    const initrd = await (await fetch("initramfs.cpio.gz")).arrayBuffer();
    r.initrd = initrd.byteLength;
    const booting = linux("linux-worker.js", vmlinux, "console=hvc", initrd, () => {}, () => {});
    r.boot = await Promise.race([booting.then(() => "returned"),
                                 new Promise((ok) => setTimeout(() => ok("running"), 3000))]);
  } catch (e) {
    r.error = e.name + ": " + e.message;
  }
  document.getElementById("result").textContent = JSON.stringify(r);
})();
</script>
"""


def test_the_runtime_site_is_upstreams_and_serve_isolates_it_in_chromium(stack) -> None:
    """The site holds upstream's runtime/ files byte for byte, vmlinux.wasm and
    initramfs.cpio.gz beside index.html. Served by `lwrecipe serve` (with a probe
    page added beside upstream's), headless Chromium is cross-origin isolated,
    upstream's linux.js loads and its linux() takes the module and the initramfs.
    With the stand-in kernel nothing boots: that needs Linux 6.4.16."""
    build(stack, "runtime")
    root, _ = stack
    site = checkout(stack, "runtime", root / "site")
    names = subprocess.run(["git", "-c", "safe.directory=*", "--git-dir", str(upstream("linux-wasm.git")), "ls-tree",
                            "--name-only", f"{REV}:runtime"], capture_output=True, text=True, check=True).stdout.split()
    assert {"index.html", "linux.js", "linux-worker.js", "xterm.js"} <= set(names)
    assert sorted(p.name for p in site.iterdir()) == sorted([*names, "vmlinux.wasm", "initramfs.cpio.gz"])
    for name in names:
        assert (site / name).read_bytes() == git_show(f"runtime/{name}"), name
    initramfs = checkout(stack, "initramfs", root / "initramfs-site")
    assert (site / "initramfs.cpio.gz").read_bytes() == (initramfs / "initramfs.cpio.gz").read_bytes()
    if chromium() is None:
        pytest.fail("chromium is not installed (scripts/setup.sh installs it)")
    probe = root / "probe-site"
    shutil.copytree(site, probe)
    (probe / "probe.html").write_text(PROBE)
    with Served([sys.executable, "-I", "-m", "lwrecipe", "serve", str(probe), "--port", "0"], root) as served:
        result = page_result(served.url + "probe.html")
    assert result == {"crossOriginIsolated": True, "linux": "function", "sab": 4,
                      "initrd": (site / "initramfs.cpio.gz").stat().st_size, "boot": "returned"}, result
    plain = [sys.executable, "-u", "-c",
             "import http.server, functools, sys\n"
             "h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])\n"
             "h.func.extensions_map['.wasm'] = 'application/wasm'\n"
             "s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), h)\n"
             "print(f'http://127.0.0.1:{s.server_address[1]}/', flush=True)\n"
             "s.serve_forever()\n", str(probe)]
    with Served(plain, root) as served:
        control = page_result(served.url + "probe.html")
    assert control["crossOriginIsolated"] is False and "SharedArrayBuffer" in control.get("error", ""), control
