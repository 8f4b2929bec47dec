"""Debian packages: unpacking as `dpkg-deb -x` does, merged-/usr, refusals, and
resolving with the real apt of this machine."""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from lwrecipe.core.errors import LwrecipeError, UnsafeArchive
from lwrecipe.inputs.debpins import write_pins
from lwrecipe.inputs.debs import MERGED_USR, DebPin, extract_deb, resolve
from lwrecipe.inputs.mirrors import Mirrors, parse_rules
from lwrecipe.recipes.recipe import parse_recipe
from lwrecipe.recipes.schema import DebianRequest, DebSource
from tests.conftest import APT_ARCHIVES, REPO
from tests.test_unpack import listing


def member(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", mode: int = 0o644, link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.size = kind, mode, link, len(data)
    return info, data


def deb(path: Path, entries: list[tuple[tarfile.TarInfo, bytes]], compress: str = "xz") -> Path:
    """A .deb as dpkg-deb builds it: an ar archive of debian-binary, control and data."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data else None)
    data_tar = lzma.compress(raw.getvalue()) if compress == "xz" else raw.getvalue()
    members = [
        ("debian-binary", b"2.0\n"),
        ("control.tar.xz", lzma.compress(b"")),
        (f"data.tar{'.xz' if compress == 'xz' else ''}", data_tar),
    ]
    out = bytearray(b"!<arch>\n")
    for name, body in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode()
        out += body + (b"\n" if len(body) % 2 else b"")
    path.write_bytes(bytes(out))
    return path


def test_unpacks_merged_usr_with_links_kept(tmp_path: Path) -> None:
    pkg = deb(
        tmp_path / "a.deb",
        [
            member("./", tarfile.DIRTYPE, mode=0o755),
            member("./bin/", tarfile.DIRTYPE, mode=0o755),
            member("./bin/tool", data=b"#!/bin/sh\n", mode=0o4755),
            member("./lib64/", tarfile.DIRTYPE, mode=0o755),
            member("./lib64/ld.so", tarfile.SYMTYPE, link="/lib/x86_64-linux-gnu/ld.so"),
            member("./usr/", tarfile.DIRTYPE),
            member("./usr/share/", tarfile.DIRTYPE),
            member("./usr/share/a", data=b"same"),
            member("./usr/share/b", tarfile.LNKTYPE, link="./usr/share/a"),
        ],
    )
    root = tmp_path / "root"
    extract_deb(pkg, root)
    assert os.readlink(root / "bin") == "usr/bin" and os.readlink(root / "lib64") == "usr/lib64"
    assert (root / "usr/bin/tool").read_bytes() == b"#!/bin/sh\n"
    assert oct((root / "usr/bin/tool").stat().st_mode & 0o7777) == "0o755"  # setuid cleared
    assert os.readlink(root / "usr/lib64/ld.so") == "/lib/x86_64-linux-gnu/ld.so"  # absolute, never followed
    assert os.stat(root / "usr/share/a").st_ino == os.stat(root / "usr/share/b").st_ino
    # a later package replaces files of an earlier one, as dpkg does
    extract_deb(deb(tmp_path / "b.deb", [member("./bin/tool", data=b"new", mode=0o755)], "none"), root)
    assert (root / "usr/bin/tool").read_bytes() == b"new"


@pytest.mark.parametrize(
    "entries, reason",
    [
        ([member("../evil", data=b"x")], "leaves the tree"),
        ([member("/etc/evil", data=b"x")], "leaves the tree"),
        (
            [
                member("./usr/", tarfile.DIRTYPE),
                member("./usr/l", tarfile.SYMTYPE, link="/etc"),
                member("./usr/l/passwd", data=b"x"),
            ],
            "goes through the symlink",
        ),
        ([member("./dev/null", tarfile.CHRTYPE)], "device or fifo"),
        ([member("./x", tarfile.LNKTYPE, link="./etc/shadow")], "not an earlier file"),
    ],
    ids=["dotdot", "absolute", "through-symlink", "device", "hardlink-out"],
)
def test_hostile_packages_are_refused(tmp_path: Path, entries, reason: str) -> None:
    victim = tmp_path / "etc"
    victim.mkdir()
    with pytest.raises(UnsafeArchive, match=reason):
        extract_deb(deb(tmp_path / "x.deb", entries), tmp_path / "root", "x.deb")
    assert list(victim.iterdir()) == []


def test_not_a_deb_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.deb").write_bytes(b"PK\x03\x04 not ar")
    with pytest.raises(UnsafeArchive, match="x.deb: not a Debian package"):
        extract_deb(tmp_path / "x.deb", tmp_path / "root")


def test_debian_mirrors_rewrite_by_prefix() -> None:
    url = "http://deb.debian.org/debian/pool/main/b/bash/bash_5.2.15-2%2bb7_amd64.deb"
    rules = (
        "http://deb.debian.org/debian/=https://snapshot.debian.org/archive/debian/20251101T000000Z;"
        "http://deb.debian.org/debian-security/=https://snapshot.debian.org/archive/debian-security/x"
    )
    assert Mirrors(debian=parse_rules(rules)).debian_urls(url) == [
        "https://snapshot.debian.org/archive/debian/20251101T000000Z/pool/main/b/bash/bash_5.2.15-2%2bb7_amd64.deb"
    ]


needs_apt = pytest.mark.skipif(shutil.which("apt-get") is None, reason="apt-get missing")


@needs_apt
@pytest.mark.slow
def test_resolve_asks_apt_for_the_closure_on_an_empty_system() -> None:
    pins = resolve(["make"])
    names = {p.name for p in pins}
    assert {"make", "libc6"} <= names  # make's own dependency, though libc6 is installed here
    shown = subprocess.run(
        ["apt-cache", "show", f"libc6={next(p.version for p in pins if p.name == 'libc6')}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    libc = next(p for p in pins if p.name == "libc6")
    assert f"SHA256: {libc.sha256}" in shown and libc.url.startswith("http") and libc.size > 0
    with pytest.raises(LwrecipeError, match="cannot resolve .*no-such-package-x"):
        resolve(["make", "no-such-package-x"])


@needs_apt
@pytest.mark.slow
def test_resolve_on_an_environment_pins_only_what_it_lacks() -> None:
    """`debs resolve --on buildenv`: the environment's packages count as installed,
    so lld-19 brings its LLVM library and nothing buildenv already has."""
    from lwrecipe.recipes.recipe import load_recipe

    env = load_recipe(REPO / "recipes" / "buildenv.toml")
    installed = [
        DebPin(s.deb, s.version, s.arch, s.url, s.sha256, 0) for s in env.doc.sources if isinstance(s, DebSource)
    ]
    alone = {p.name for p in resolve(["lld-19"])}
    on_env = {p.name for p in resolve(["lld-19"], installed=installed)}
    assert {"lld-19", "libllvm19"} <= on_env and "libc6" in alone and "libc6" not in on_env
    assert not on_env & {p.name for p in installed} and on_env < alone


def test_the_llvm_stand_in_is_pinned_on_the_environment() -> None:
    """standins/llvm.toml says what it was resolved on, and pins none of its packages."""
    from lwrecipe.recipes.recipe import load_recipe

    standin = load_recipe(REPO / "standins" / "llvm.toml")
    env = load_recipe(REPO / "recipes" / "buildenv.toml")
    assert standin.doc.debian is not None and standin.doc.debian.on == "buildenv"
    ours = {s.deb for s in standin.doc.sources if isinstance(s, DebSource)}
    assert {"clang-19", "lld-19", "llvm-19", "libclang-rt-19-dev-wasm32", "libllvm19"} <= ours
    assert not ours & {s.deb for s in env.doc.sources if isinstance(s, DebSource)}


RECIPE = """\
# top comment, kept
schema = 1

[package]   # trailing comment, kept
name = "env"
version = "1"
license = "MIT"

[[sources]]
path = "files"  # a non-deb source stays first

[[sources]]
deb = "old"
version = "1:0.9"
arch = "all"
url = "http://deb.debian.org/debian/pool/main/o/old/old_0.9_all.deb"
sha256 = "{sha}"

[build]
bootstrap = true
script = '''
cp -a /build/src/. "$LW_OUT/"
'''
"""


def test_write_pins_keeps_the_rest_of_the_file(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    path = tmp_path / "env.toml"
    path.write_text(RECIPE.format(sha="0" * 64))
    new = DebPin(
        "new",
        "2.0-1",
        "amd64",
        "http://deb.debian.org/debian/pool/main/n/new/new_2.0-1_amd64.deb",
        hashlib.sha256(b"new").hexdigest(),
        3,
    )
    changes = write_pins(path, DebianRequest(packages=["new"]), [new])
    assert [c.text() for c in changes] == ["+ new 2.0-1", "- old 1:0.9"]
    text = path.read_text()
    assert text.startswith("# top comment, kept\nschema = 1\n\n[package]   # trailing comment, kept\n")
    assert 'path = "files"  # a non-deb source stays first' in text
    doc = parse_recipe(text.encode(), "env.toml")
    debs = [s for s in doc.sources if isinstance(s, DebSource)]
    assert [(d.deb, d.version, d.sha256) for d in debs] == [("new", "2.0-1", new.sha256)]
    assert doc.debian is not None and doc.debian.packages == ["new"]
    assert doc.build.script == 'cp -a /build/src/. "$LW_OUT/"\n'


def test_a_hardlink_to_a_name_since_made_a_link_is_refused(tmp_path: Path) -> None:
    """`f` a file, then `f` a link to a host file, then `h` a hardlink to `f`: the old
    code's os.link followed `f` and made `h` the host file's own inode inside the tree."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"host file\n")
    pkg = deb(
        tmp_path / "x.deb",
        [
            member("./usr/", tarfile.DIRTYPE),
            member("./usr/f", data=b"x"),
            member("./usr/f", tarfile.SYMTYPE, link=str(victim)),
            member("./usr/h", tarfile.LNKTYPE, link="./usr/f"),
        ],
    )
    with pytest.raises(UnsafeArchive, match="x.deb: './usr/h': hardlink to './usr/f', not an earlier file"):
        extract_deb(pkg, tmp_path / "root", "x.deb")
    assert os.stat(victim).st_nlink == 1


def test_an_entry_through_a_link_an_earlier_package_made_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    extract_deb(
        deb(
            tmp_path / "a.deb", [member("./usr/", tarfile.DIRTYPE), member("./usr/lib", tarfile.SYMTYPE, link="share")]
        ),
        root,
    )
    with pytest.raises(UnsafeArchive, match="b.deb: .*goes through the symlink"):
        extract_deb(deb(tmp_path / "b.deb", [member("./usr/lib/x", data=b"x")]), root, "b.deb")
    assert not (root / "usr" / "share").exists()


@pytest.mark.skipif(not list(APT_ARCHIVES.glob("perl-base_*.deb")), reason="no perl-base in apt's cache")
@pytest.mark.slow
def test_a_real_package_unpacks_as_dpkg_deb_unpacks_it(tmp_path: Path) -> None:
    """Bytes, links, hardlinks (perl and perl5.36.0 are one file) and execute bits as
    `dpkg-deb -x` makes them; the tree merged-/usr as lwrecipe lays it out."""
    pkg = sorted(APT_ARCHIVES.glob("perl-base_*.deb"))[-1]
    ours, theirs = tmp_path / "ours", tmp_path / "dpkg"
    extract_deb(pkg, ours)
    subprocess.run(["dpkg-deb", "-x", str(pkg), str(theirs)], check=True)
    for top in MERGED_USR:  # dpkg-deb leaves them where the package has them
        if (theirs / top).is_dir() and not (theirs / top).is_symlink():
            shutil.copytree(theirs / top, theirs / "usr" / top, symlinks=True, dirs_exist_ok=True)
            shutil.rmtree(theirs / top)
        if (theirs / "usr" / top).is_dir() and not (theirs / top).is_symlink():
            (theirs / top).symlink_to(f"usr/{top}")
    got, want = listing(ours), listing(theirs)
    assert {k: v[:2] + v[3:] for k, v in got.items()} == {k: v[:2] + v[3:] for k, v in want.items()}
