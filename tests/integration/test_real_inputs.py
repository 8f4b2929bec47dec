"""The real recipes on the real upstream inputs of ../shared/upstream, reached the way
an air-gapped user reaches them: through a config file's `[mirrors]` (musl's
release tarball and BusyBox's tag archive from directories, the pinned linux-wasm
commit from a local clone). The recipes are the repository's own, unedited; what
cannot be had here is swapped in with `--with-recipe`, as docs/linux-wasm.md
("Tested here") tells a user to:

- llvm=standins/llvm.toml: Debian 12's LLVM 19 for the pinned LLVM 18.1.2;
- linux=standins/linux.toml: the exported headers only, Debian's uapi headers
  with the Wasm port's asm/ from kernel patch 0005, for Linux 6.4.16;
- busybox=<the real recipe, its tarball pin swapped for the 1_36_1 tag archive's>
  (the release tarball's bytes are not here; nothing else differs, checked below).

musl, linux-headers, busybox's build, initramfs and runtime are the real recipes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.browser import page_result
from tests.conftest import REPO, run_subprocess, upstream
from tests.servers import Served, plain_server

LINUX_WASM = "https://github.com/joelseverin/linux-wasm.git"
REV = "970e08b0d605e63e36a99d22596e8899a1dab8b5"
BUSYBOX_TAG = "busybox-1.36.1-git-tag.tar.bz2"
BUSYBOX_TAG_SHA256 = "0cf4f52a37154d5a53d6a79b58ea92a8c51256a675b87a3016c62c2320806b95"
BUSYBOX_TAG_URL = "https://git.busybox.net/busybox/snapshot/busybox-1_36_1.tar.bz2"
USERLAND = ("musl", "linux-headers", "busybox", "initramfs")

# network: the environment's Debian packages
pytestmark = [pytest.mark.slow, pytest.mark.sandbox, pytest.mark.network]


def git_show(path: str) -> bytes:
    return subprocess.run(
        ["git", "-c", "safe.directory=*", "--git-dir", str(upstream("linux-wasm.git")), "show", f"{REV}:{path}"],
        capture_output=True,
        check=True,
    ).stdout


def busybox_from_the_tag(dest: Path) -> Path:
    """The real busybox recipe, its tarball pin (url, sha256) swapped for BusyBox's
    1_36_1 tag archive's: the one difference from recipes/busybox.toml."""
    real = (REPO / "recipes" / "busybox.toml").read_text()
    tarball = tomllib.loads(real)["sources"][0]
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "busybox.toml"
    path.write_text(real.replace(tarball["url"], BUSYBOX_TAG_URL).replace(tarball["sha256"], BUSYBOX_TAG_SHA256))
    return path


class Userland:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.busybox = busybox_from_the_tag(root / "busybox-tag")
        self.subs = [
            "--with-recipe",
            "llvm=standins/llvm.toml",
            "--with-recipe",
            "linux=standins/linux.toml",
            "--with-recipe",
            f"busybox={self.busybox}",
        ]

    def run(self, *args: str, cache: str = "cache", subs: list[str] | None = None):
        command, rest = args[0], args[1:]
        return run_subprocess(
            "--cache",
            str(self.root / cache),
            command,
            *(self.subs if subs is None else subs),
            *rest,
            cwd=REPO,
            env=self.env,
        )

    def build(self, *targets: str, cache: str = "cache", subs: list[str] | None = None):
        result = self.run("build", *targets, cache=cache, subs=subs)
        assert result.code == 0, result.err[-4000:]
        return result

    def checkout(self, target: str, name: str, subs: list[str] | None = None) -> Path:
        dest = self.root / name
        if not dest.exists():
            result = self.run("checkout", target, str(dest), subs=subs)
            assert result.code == 0, result.err
        return dest

    def records(self, cache: str = "cache") -> dict[str, dict]:
        return {(r := json.loads(p.read_text()))["name"]: r for p in (self.root / cache / "ac").iterdir()}


@pytest.fixture(scope="module")
def userland(tmp_path_factory: pytest.TempPathFactory, deb_mirror: dict[str, str]) -> Userland:
    root = tmp_path_factory.mktemp("userland")
    clone = root / "linux-wasm.git"  # a copy the running user owns (git refuses others' repositories)
    shutil.copytree(upstream("linux-wasm.git"), clone, symlinks=True)
    sources = upstream(f"sources/{BUSYBOX_TAG}").parent
    tagged = root / "tag-archives"  # the tag archive under its own name, found by sha256 through an index
    tagged.mkdir()
    (tagged / BUSYBOX_TAG).symlink_to(sources / BUSYBOX_TAG)
    (tagged / "SHA256SUMS").write_text(f"{BUSYBOX_TAG_SHA256}  {BUSYBOX_TAG}\n")
    config = root / "config.toml"
    config.write_text(f'[mirrors]\nfiles = ["{sources}", "{tagged}"]\ngit = {{ "{LINUX_WASM}" = ["{clone}"] }}\n')
    return Userland(root, {"LWRECIPE_CONFIG": str(config), **deb_mirror})


@pytest.fixture(scope="module")
def built(userland: Userland) -> Userland:
    """The whole userland chain built once: llvm and linux stand-ins, musl,
    linux-headers, BusyBox 1.36.1 and the initramfs, for wasm32."""
    userland.build("initramfs", "-j", "2")
    return userland


def test_the_busybox_substitute_differs_from_the_real_recipe_only_in_its_tarball(userland: Userland) -> None:
    real = tomllib.loads((REPO / "recipes" / "busybox.toml").read_text())
    ours = tomllib.loads(userland.busybox.read_text())
    assert ours["sources"][0].pop("url") == BUSYBOX_TAG_URL and ours["sources"][0].pop("sha256") == BUSYBOX_TAG_SHA256
    real["sources"][0].pop("url"), real["sources"][0].pop("sha256")
    assert ours == real


def test_every_patch_the_real_recipes_name_comes_from_the_pinned_commit(userland: Userland) -> None:
    """fetch reads each patch from the linux-wasm tree it got from the local clone
    (the git mirror of the config file) and prints its sha256: the bytes of the file
    at the pinned commit; every patch of the kernel and LLVM exists there too."""
    from lwrecipe.recipes.graph import load_graph
    from lwrecipe.recipes.schema import SourcePatch

    result = userland.run("fetch", "initramfs")
    assert result.code == 0, result.err
    clone = re.escape(str(userland.root / "linux-wasm.git"))
    assert re.search(rf"git {REV[:12]} .* ({clone}|cache)$", result.out, re.M), result.out
    printed = dict(re.findall(r"^(\S+: patches\[\d+\]): sha256 ([0-9a-f]{64})$", result.out, re.M))
    graph = load_graph([str(REPO / "recipes" / "runtime.toml")])
    named = {
        f"{r.name}: patches[{i}]": p.path
        for r in graph.recipes.values()
        for i, p in enumerate(r.doc.patches)
        if isinstance(p, SourcePatch)
    }
    assert len(named) == 12 + 1 + 1 + 1  # kernel series, musl, busybox, llvm
    for label, path in named.items():
        data = git_show(path)
        assert data.startswith(b"From "), path
        if label.startswith(("musl:", "busybox:")):  # applied below by the builds' own patch step
            assert printed[label] == hashlib.sha256(data).hexdigest()


def test_plan_shows_the_stand_ins(userland: Userland) -> None:
    result = userland.run("plan", "initramfs")
    assert result.code == 0, result.err
    rows = {line.split()[0] for line in result.out.splitlines()[1:] if line and not line.startswith("*")}
    assert {"llvm*", "linux*", "busybox*", "musl", "initramfs"} <= rows
    assert f"* busybox: from {userland.busybox} (--with-recipe), not the project's recipe" in result.out
    assert "* llvm: from standins/llvm.toml (--with-recipe), not the project's recipe" in result.out


def wasm_imports(module: bytes) -> list[tuple[str, str]]:
    """(module, name) of each import of a Wasm module: its import section, read here."""

    def leb(at: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = module[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value, at

    assert module[:8] == b"\0asm\1\0\0\0"
    at = 8
    while at < len(module):
        section, at = module[at], at + 1
        size, at = leb(at)
        if section != 2:
            at += size
            continue
        count, at = leb(at)
        found = []
        for _ in range(count):
            names = []
            for _ in range(2):
                length, at = leb(at)
                names.append(module[at : at + length].decode())
                at += length
            kind, at = module[at], at + 1
            if kind == 0:
                _, at = leb(at)
            elif kind == 1:
                at += 1
                flags, at = leb(at)
                _, at = leb(at)
                if flags & 1:
                    _, at = leb(at)
            elif kind == 2:
                flags, at = leb(at)
                _, at = leb(at)
                if flags & 1:
                    _, at = leb(at)
            else:
                at += 2
            found.append((names[0], names[1]))
        return found
    return []


def test_busybox_is_a_wasm32_module_importing_linux_wasms_syscalls(built: Userland) -> None:
    out = built.checkout("busybox", "busybox-out")
    module = (out / "bin" / "busybox").read_bytes()
    sections = subprocess.run(
        ["llvm-readobj-16", "--sections", str(out / "bin" / "busybox")], capture_output=True, text=True, check=True
    ).stdout
    assert {"IMPORT", "CODE", "DATA", "EXPORT"} <= set(re.findall(r"Type: (\w+) \(", sections))
    imports = wasm_imports(module)
    assert {("env", f"__wasm_syscall_{n}") for n in range(7)} <= set(imports)
    assert ("env", "memory") in imports and len(module) > 1_000_000
    links = [p for p in out.rglob("*") if p.is_symlink()]
    assert len(links) >= 390
    assert all((p.parent / p.readlink()).resolve() == (out / "bin" / "busybox").resolve() for p in links)
    assert {"bin/sh", "sbin/init", "bin/ls", "bin/mount"} <= {p.relative_to(out).as_posix() for p in links}


def test_musl_objects_are_wasm32_and_position_independent(built: Userland) -> None:
    """Every member of libc.a is a wasm32 object, and none has a non-PIC memory or
    table relocation (what Debian's clang-16, which ignores -fPIC, would leave)."""
    libc = built.checkout("musl", "musl-out") / "lib" / "libc.a"
    headers = subprocess.run(
        ["llvm-readobj-16", "--file-headers", str(libc)], capture_output=True, text=True, check=True
    ).stdout
    formats = re.findall(r"^Format: (\S+)$", headers, re.M)
    assert (
        len(formats) > 1000
        and set(formats) == {"WASM"}
        and set(re.findall(r"^Arch: (\S+)$", headers, re.M)) == {"wasm32"}
    )
    relocs = subprocess.run(["llvm-objdump-16", "-r", str(libc)], capture_output=True, text=True).stdout
    kinds = set(re.findall(r"\b(R_WASM_\w+)\b", relocs))
    assert "R_WASM_MEMORY_ADDR_REL_SLEB" in kinds and "R_WASM_TABLE_INDEX_REL_SLEB" in kinds, kinds
    assert not kinds & {"R_WASM_MEMORY_ADDR_SLEB", "R_WASM_MEMORY_ADDR_LEB", "R_WASM_TABLE_INDEX_SLEB"}, kinds


def test_the_real_headers_patch_applies_inside_the_headers_tree(built: Userland) -> None:
    """The real linux-headers script applies upstream's busybox-kernel-headers patch
    (fuzz 0) from inside a uapi tree laid out as headers_install makes it."""
    out = built.checkout("linux-headers", "headers-out")
    linux = built.checkout("linux", "linux-out")
    patch = git_show("patches/busybox-kernel-headers/busybox-kernel-headers-for-musl.patch").decode()
    touched = sorted(set(re.findall(r"^\+\+\+ b/(\S+)", patch, re.M)))
    assert "linux/if_ether.h" in touched and all((out / "include" / rel).is_file() for rel in touched)
    for rel in ("linux/if_ether.h", "linux/libc-compat.h"):
        assert (out / "include" / rel).read_bytes() != (linux / "include" / rel).read_bytes()
    assert b"_UAPI_ASM_WASM_BYTEORDER_H" in (out / "include" / "asm" / "byteorder.h").read_bytes()


def cpio_entries(data: bytes) -> list[tuple[str, str, str]]:
    """(name, mode string, device numbers or '') of each entry, as GNU cpio lists them."""
    listing = subprocess.run(
        ["cpio", "-itv", "--quiet", "--numeric-uid-gid"],
        input=data,
        capture_output=True,
        check=True,
        env={"TZ": "UTC", "LC_ALL": "C", "PATH": "/usr/bin:/bin"},
    ).stdout.decode()
    rows = []
    for line in listing.splitlines():
        cols = line.split()
        name = cols[-3] if cols[0].startswith("l") else cols[-1]
        rows.append((name, cols[0], " ".join(cols[4:6]) if cols[0][0] in "cb" else ""))
    return rows


def test_the_initramfs_is_upstreams_base_then_the_real_busybox_then_upstreams_init(built: Userland) -> None:
    image = built.checkout("initramfs", "initramfs-out") / "initramfs.cpio.gz"
    raw = image.read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\0\0\0\0"  # gzip, no timestamp
    ours = cpio_entries(gzip.decompress(raw))
    base = cpio_entries(git_show("patches/initramfs/initramfs-base.cpio"))
    assert ours[: len(base)] == base  # name, type, mode and device numbers, one by one
    assert ("dev/console", "crw-r--r--", "5, 1") in base
    busybox = built.checkout("busybox", "busybox-out")
    tree = sorted(p.relative_to(busybox).as_posix() for p in busybox.rglob("*"))
    assert [name for name, _, _ in ours[len(base) : -1]] == [".", *tree]
    assert ours[-1] == ("init", "-rwxr-xr-x", "")
    extracted = built.root / "initramfs-x"
    extracted.mkdir()
    subprocess.run(
        ["cpio", "-id", "--quiet", "--no-preserve-owner"],
        input=gzip.decompress(raw),
        cwd=extracted,
        capture_output=True,
    )
    assert (extracted / "init").read_bytes() == git_show("patches/initramfs/init")
    assert (extracted / "bin" / "busybox").read_bytes() == (busybox / "bin" / "busybox").read_bytes()
    assert {"bin", "dev", "etc", "home", "mnt", "proc", "sys", "usr"} <= {p.name for p in extracted.iterdir()}


def test_build_records_note_the_stand_ins_they_were_built_with(built: Userland) -> None:
    records = built.records()
    assert set(records["musl"]["substituted"]) == {"llvm"}
    assert set(records["busybox"]["substituted"]) == {"llvm", "linux", "busybox"}
    assert records["busybox"]["substituted"]["busybox"]["recipe"] == str(built.busybox)
    assert "substituted" not in records["buildenv"]


def test_the_chain_rebuilds_bit_identically_under_check(built: Userland) -> None:
    result = built.build("--check", *USERLAND)
    for name in USERLAND:
        assert re.search(rf"^{name}\s+checked\s", result.err, re.M), result.err[-2000:]


def test_musl_in_a_second_store_has_the_same_output(built: Userland) -> None:
    built.build("musl", cache="cache2")
    assert built.records("cache2")["musl"]["output_id"] == built.records()["musl"]["output_id"]


def test_a_busybox_whose_usage_compression_failed_is_refused(built: Userland) -> None:
    """A tool that fails quietly (here bzip2, shadowed by one that prints nothing)
    made a BusyBox with an empty --help text; the recipe's own check stops it."""
    text = built.busybox.read_text().replace(
        'build="$TMPDIR/busybox-build"',
        'mkdir -p "$TMPDIR/fake"; printf "#!/bin/sh\\nexit 0\\n" > "$TMPDIR/fake/bzip2"; chmod 0755 "$TMPDIR/fake/bzip2"\n'
        'export PATH="$TMPDIR/fake:$PATH"\nbuild="$TMPDIR/busybox-build"',
    )
    broken = built.root / "busybox-broken" / "busybox.toml"
    broken.parent.mkdir()
    broken.write_text(text)
    subs = [*built.subs[:4], "--with-recipe", f"busybox={broken}"]
    result = built.run("build", "busybox", subs=subs)
    assert result.code == 1 and "busybox: the compressed usage text is empty" in result.err, result.err[-2000:]


def linux_with_a_stand_in_module(userland: Userland) -> Path:
    """standins/linux.toml with an empty Wasm module as vmlinux.wasm, so the real
    runtime recipe has something to copy (booting needs the real kernel)."""
    text = (REPO / "standins" / "linux.toml").read_text()
    text = text.replace("\nPY\n'''", "\nPY\nprintf '\\000asm\\001\\000\\000\\000' > \"$LW_OUT/vmlinux.wasm\"\n'''")
    assert "vmlinux.wasm" in text
    path = userland.root / "linux-module" / "linux.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(
        text.replace('host_tools = ["cp", "mkdir", "python3"]', 'host_tools = ["cp", "mkdir", "python3", "printf"]')
    )
    return path


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


@pytest.mark.browser
def test_the_runtime_site_is_upstreams_and_serve_isolates_it_in_chromium(built: Userland) -> None:
    """The site holds upstream's runtime/ files byte for byte, with vmlinux.wasm and
    the real userland's initramfs.cpio.gz beside index.html. Served by `lwrecipe
    serve` (a probe page added beside upstream's), headless Chromium is cross-origin
    isolated, upstream's linux.js loads and its linux() takes the module and the
    initramfs. With the stand-in kernel (an empty module) nothing boots."""
    subs = [*built.subs[:2], "--with-recipe", f"linux={linux_with_a_stand_in_module(built)}", *built.subs[4:]]
    built.build("runtime", subs=subs)
    site = built.checkout("runtime", "site", subs=subs)
    names = subprocess.run(
        [
            "git",
            "-c",
            "safe.directory=*",
            "--git-dir",
            str(upstream("linux-wasm.git")),
            "ls-tree",
            "--name-only",
            f"{REV}:runtime",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert {"index.html", "linux.js", "linux-worker.js", "xterm.js"} <= set(names)
    assert sorted(p.name for p in site.iterdir()) == sorted([*names, "vmlinux.wasm", "initramfs.cpio.gz"])
    for name in names:
        assert (site / name).read_bytes() == git_show(f"runtime/{name}"), name
    initramfs = built.checkout("initramfs", "initramfs-out")
    assert (site / "initramfs.cpio.gz").read_bytes() == (initramfs / "initramfs.cpio.gz").read_bytes()
    probe = built.root / "probe-site"
    shutil.copytree(site, probe)
    (probe / "probe.html").write_text(PROBE)
    with Served([sys.executable, "-I", "-m", "lwrecipe", "serve", str(probe), "--port", "0"], built.root) as served:
        result = page_result(served.url + "probe.html")
    assert result == {
        "crossOriginIsolated": True,
        "linux": "function",
        "sab": 4,
        "initrd": (site / "initramfs.cpio.gz").stat().st_size,
        "boot": "returned",
    }, result
    with Served(plain_server(probe), built.root) as served:
        control = page_result(served.url + "probe.html")
    assert control["crossOriginIsolated"] is False and "SharedArrayBuffer" in control.get("error", ""), control
