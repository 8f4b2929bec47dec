"""The full-shape rehearsal: seven recipes with the real stack's names and
dependency shape, built end to end offline into an initramfs and a runtime
site, served by `lwrecipe serve` and booted in real headless Chromium.

llvm, linux, musl and busybox are toy stand-ins (tests/rehearsal/recipes/*.in:
toy sources served as tarballs over local HTTP, a patch series each, host
clang-16/wasm-ld-16 standing in for the pinned toolchain). linux-headers,
initramfs and runtime are the real recipes from recipes/, with only the
linux-wasm git source re-pointed at a toy repository laid out as the real one
(its headers patch applies inside the headers directory, its initramfs base and
init sit where upstream's do), whose runtime page is a toy: it calls the toy
kernel's exports, not upstream's linux.js. The real recipes on the real inputs
are tests/integration/test_real_inputs.py.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.browser import page_result
from tests.conftest import REPO, Project, run_subprocess
from tests.servers import Served, fault_server, plain_server

REHEARSAL = REPO / "tests" / "rehearsal"
TOYS = {"llvm": "18.1.2", "linux": "6.4.16", "musl": "1.2.5", "busybox": "1.36.1"}
REAL = ("linux-headers", "initramfs", "runtime")
STACK = (*TOYS, *REAL)
REAL_GIT = "https://github.com/joelseverin/linux-wasm.git"
REAL_REV = "970e08b0d605e63e36a99d22596e8899a1dab8b5"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.sandbox,
    pytest.mark.network,  # the environment's Debian packages
    pytest.mark.browser,
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("clang-16", "wasm-ld-16", "llvm-ar-16", "git", "cpio")),
        reason="needs clang-16, wasm-ld-16, llvm-ar-16, git and cpio",
    ),
]


def toy_tarball(name: str, version: str) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        root = REHEARSAL / "upstream" / name
        for path in sorted(root.rglob("*")):
            info = tar.gettarinfo(str(path), f"{name}-{version}/{path.relative_to(root).as_posix()}")
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_file():
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    return buf.getvalue()


def git_repo(where: Path) -> str:
    """The toy linux-wasm repository, laid out as the real one; its initramfs base
    archive (upstream's needs root for its device node) is written here without."""
    shutil.copytree(REHEARSAL / "upstream" / "linux-wasm", where)
    base = [
        sys.executable,
        "-m",
        "lwrecipe.initramfs",
        "--no-gzip",
        "--mtime",
        "0",
        "--out",
        str(where / "patches" / "initramfs" / "initramfs-base.cpio"),
        "--device",
        "dev/console:c:5:1:644",
    ]
    for d in ("bin", "dev", "etc", "home", "mnt", "proc", "sys", "usr"):
        base += ["--dir", d]
    subprocess.run(base, check=True)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
        "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
    }
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "toy linux-wasm"]):
        subprocess.run(["git", *args], cwd=where, env=env, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def rehearsal(project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deb_mirror: dict[str, str]):
    monkeypatch.setenv("LWRECIPE_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("LWRECIPE_MIRRORS", deb_mirror["LWRECIPE_MIRRORS"])
    shutil.copy(REPO / "recipes" / "buildenv.toml", project.root / "recipes" / "buildenv.toml")
    with fault_server() as server:
        pins = {}
        for name, version in TOYS.items():
            data = toy_tarball(name, version)
            pins[name] = (server.add(f"/{name}-{version}.tar.gz", data), hashlib.sha256(data).hexdigest())
        rev = git_repo(tmp_path / "linux-wasm")
        for name in TOYS:
            text = (REHEARSAL / "recipes" / f"{name}.toml.in").read_text()
            project.recipe(
                name, text.replace(f"@URL:{name}@", pins[name][0]).replace(f"@SHA256:{name}@", pins[name][1])
            )
        for name in REAL:
            text = (REPO / "recipes" / f"{name}.toml").read_text()
            assert REAL_GIT in text and REAL_REV in text
            project.recipe(name, text.replace(REAL_GIT, f"file://{tmp_path / 'linux-wasm'}").replace(REAL_REV, rev))
        shutil.copytree(REHEARSAL / "patches", project.root / "patches")
        project.file("lwrecipe/initramfs.py", (REPO / "lwrecipe" / "initramfs.py").read_bytes())
        yield project


def build(project: Project, *args: str, cache: str = "cache"):
    return run_subprocess("--cache", str(project.root / cache), "build", *args, cwd=project.root)


def outputs(project: Project, cache: str = "cache") -> dict[str, str]:
    return {(r := json.loads(p.read_text()))["name"]: r["output_id"] for p in (project.root / cache / "ac").iterdir()}


def test_full_stack_builds_reproducibly_and_boots_in_chromium(rehearsal: Project) -> None:
    first = build(rehearsal, "runtime", "-j", "2")
    assert first.code == 0, first.err
    assert "8 built, 0 cached" in first.err
    again = build(rehearsal, "runtime")
    assert again.code == 0 and "0 built, 8 cached" in again.err and "building" not in again.err
    other = build(rehearsal, "runtime", cache="cache2")
    assert other.code == 0, other.err
    assert outputs(rehearsal) == outputs(rehearsal, "cache2") and set(outputs(rehearsal)) == {*STACK, "buildenv"}

    image = rehearsal.root / "initramfs-out"
    assert (
        run_subprocess(
            "--cache", str(rehearsal.root / "cache"), "checkout", "initramfs", str(image), cwd=rehearsal.root
        ).code
        == 0
    )
    listing = (
        subprocess.run(
            ["cpio", "-it", "--quiet"],
            input=gzip.decompress((image / "initramfs.cpio.gz").read_bytes()),
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split()
    )
    assert {"init", "bin/busybox", "bin/sh", "dev/console", "etc", "home", "mnt", "proc"} <= set(listing)

    served = Served(
        [
            sys.executable,
            "-I",
            "-m",
            "lwrecipe",
            "--cache",
            str(rehearsal.root / "cache"),
            "serve",
            "runtime",
            "--port",
            "0",
        ],
        rehearsal.root,
    )
    try:
        result = page_result(served.url)
    finally:
        served.stop()
    assert result.get("error") is None, result
    assert result["crossOriginIsolated"] is True and result["sharedArrayBuffer"] == 65536
    assert result["kernel"] == 64 and result["console"] == 80  # linux's patch series is in the kernel
    assert result["busybox"] == len("busybox-wasm") + 1  # busybox patch, musl's strlen, the patched headers
    assert {"init", "bin/busybox", "dev/console"} <= set(result["entries"])
    assert result["console_device"] == [5, 1] and result["sh"] == "busybox"
    assert not list((rehearsal.root / "cache" / "tmp").glob("serve-*"))  # the served copy is removed

    site = rehearsal.root / "site"
    assert (
        run_subprocess(
            "--cache", str(rehearsal.root / "cache"), "checkout", "runtime", str(site), cwd=rehearsal.root
        ).code
        == 0
    )
    with Served(plain_server(site), rehearsal.root) as plain:
        control = page_result(plain.url)
    assert control["crossOriginIsolated"] is False  # without COOP/COEP the same page is not isolated
