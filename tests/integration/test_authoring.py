"""`pin` and `new` against local servers: pins written into recipe files with every
other byte kept, a real recipe moved to a new version end to end, and new recipes
for an autotools and a CMake project that then build and run."""

from __future__ import annotations

import difflib
import gzip
import hashlib
import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import REPO, Project, run_subprocess, upstream
from tests.servers import fault_server

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]


def tar_gz(top: str, files: dict[str, str], modes: dict[str, int] | None = None) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            data = text.encode()
            info.size, info.mode = len(data), (modes or {}).get(name, 0o644)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def lw(project: Project, *args: str, env: dict[str, str] | None = None):
    return run_subprocess("--cache", str(project.root / "cache"), *args, cwd=project.root, env=env)


def changed_lines(old: str, new: str) -> list[str]:
    return [line for line in difflib.ndiff(old.splitlines(), new.splitlines()) if line[:1] in "+-"]


RECIPE = """# a comment the author wrote; kept as it is
schema = 1

[package]
name = "pkg"     # trailing comment
version = "1.0"
license = "MIT"

[[sources]]
url = "{url}"
sha256 = "update"   # pin asks for this one
strip = 1

[build]
host_tools = ["mkdir"]
script = 'mkdir -p "$LW_OUT"'
"""


def test_pin_writes_the_sha256_and_keeps_every_other_byte(project: Project) -> None:
    data = tar_gz("pkg-1.0", {"README": "hello\n"})
    with fault_server() as server:
        url = server.add("/pkg-1.0.tar.gz", data)
        project.recipe("pkg", RECIPE.format(url=url))
        before = (project.root / "recipes" / "pkg.toml").read_text()
        result = lw(project, "pin", "pkg")
    assert result.code == 0, result.err
    after = (project.root / "recipes" / "pkg.toml").read_text()
    sha = hashlib.sha256(data).hexdigest()
    assert changed_lines(before, after) == [
        '- sha256 = "update"   # pin asks for this one',
        f'+ sha256 = "{sha}"   # pin asks for this one',
    ]
    assert f"sources[0]: sha256 {sha}" in result.err and "+sha256" in result.out
    again = lw(project, "pin", "pkg")
    assert again.code == 0 and "every pin is current" in again.err
    assert (project.root / "cache" / "sources" / sha).read_bytes() == data  # the build needs no second download


def test_pin_resolves_a_git_ref_to_its_commit(project: Project, tmp_path: Path) -> None:
    from tests.test_gitsrc import git

    work = tmp_path / "tools"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    (work / "f").write_text("1")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "one", cwd=work)
    git("tag", "-a", "v1", "-m", "release one", cwd=work)
    tagged = git("rev-parse", "HEAD", cwd=work)
    (work / "f").write_text("2")
    git("commit", "-qam", "two", cwd=work)
    project.recipe(
        "t",
        f'''schema = 1
[package]
name = "t"
version = "1"
license = "MIT"
[[sources]]
name = "tools"
git = "file://{work}"
rev = "{"0" * 40}"  # to be pinned
[build]
script = "true"
''',
    )
    result = lw(project, "pin", "t", "--ref", "tools=v1")
    assert result.code == 0, result.err
    assert f'rev = "{tagged}"  # to be pinned' in (project.root / "recipes" / "t.toml").read_text()
    head = git("rev-parse", "HEAD", cwd=work)
    assert lw(project, "pin", "t", "--ref", "main").code == 0
    assert f'rev = "{head}"' in (project.root / "recipes" / "t.toml").read_text()
    bad = lw(project, "pin", "t", "--ref", "other=v1")
    assert bad.code == 2 and "no git source of that name" in bad.err


def test_pin_version_moves_a_real_recipe_to_a_new_release(project: Project) -> None:
    """recipes/musl.toml, its download re-pointed at a local server (the one edit),
    moved to 1.2.6: version, URL and sha256 change, nothing else; a release that
    is not there writes nothing."""
    real = upstream("sources/musl-1.2.5.tar.gz").read_bytes()
    newer = tar_gz("musl-1.2.6", {"VERSION": "1.2.6\n"})
    text = (REPO / "recipes" / "musl.toml").read_text()
    with fault_server() as server:
        server.add("/releases/musl-1.2.5.tar.gz", real)
        server.add("/releases/musl-1.2.6.tar.gz", newer)
        local = text.replace("https://musl.libc.org/releases/", server.url("/releases/"))
        project.recipe("musl", local)
        result = lw(project, "pin", "musl", "--version", "1.2.6")
        assert result.code == 0, result.err
        after = (project.root / "recipes" / "musl.toml").read_text()
        missing = lw(project, "pin", "musl", "--version", "9.9.9")
    assert sorted(changed_lines(local, after)) == sorted(
        [
            '- version = "1.2.5"',
            '+ version = "1.2.6"',
            f'- url = "{server.url("/releases/musl-1.2.5.tar.gz")}"',
            f'+ url = "{server.url("/releases/musl-1.2.6.tar.gz")}"',
            f'- sha256 = "{hashlib.sha256(real).hexdigest()}"',
            f'+ sha256 = "{hashlib.sha256(newer).hexdigest()}"',
        ]
    )
    assert missing.code == 1 and "HTTP 404" in missing.err
    assert (project.root / "recipes" / "musl.toml").read_text() == after


AUTOTOOLS = {
    "configure": "#!/bin/sh\n# a configure as autoconf makes them: reads --prefix, writes the Makefile\n"
    'prefix=/usr/local\nfor a in "$@"; do case "$a" in --prefix=*) prefix="${a#--prefix=}";; esac; done\n'
    'sed "s|@prefix@|$prefix|" Makefile.in > Makefile\n',
    "Makefile.in": "prefix = @prefix@\nhello: hello.c\n\tcc -O2 -o hello hello.c\n"
    "install: hello\n\tmkdir -p $(DESTDIR)$(prefix)/bin\n\tcp hello $(DESTDIR)$(prefix)/bin/hello\n",
    "hello.c": '#include <stdio.h>\nint main(void) { puts("hello from autotools"); return 0; }\n',
}
CMAKE = {
    "CMakeLists.txt": "cmake_minimum_required(VERSION 3.13)\nproject(hello C)\nadd_executable(hello hello.c)\n"
    "install(TARGETS hello DESTINATION bin)\n",
    "hello.c": '#include <stdio.h>\nint main(void) { puts("hello from cmake"); return 0; }\n',
}


@pytest.mark.network  # built on the environment: its Debian packages
def test_new_makes_recipes_that_build_an_autotools_and_a_cmake_project(
    project: Project, deb_mirror: dict[str, str]
) -> None:
    shutil.copy(REPO / "recipes" / "buildenv.toml", project.root / "recipes" / "buildenv.toml")
    with fault_server() as server:
        at = server.add("/hello-at-1.0.tar.gz", tar_gz("hello-at-1.0", AUTOTOOLS, {"configure": 0o755}))
        cm = server.add("/hello-cm-2.1.tar.gz", tar_gz("hello-cm-2.1", CMAKE))
        made_at = lw(project, "new", "hello-at", "--url", at)
        made_cm = lw(project, "new", "hello-cm", "--url", cm)
    assert made_at.code == 0 and "autotools" in made_at.err, made_at.err
    assert made_cm.code == 0 and "CMake" in made_cm.err, made_cm.err
    recipe = (project.root / "recipes" / "hello-cm.toml").read_text()
    assert 'version = "2.1"' in recipe and 'environment = "buildenv"' in recipe and "strip = 1" in recipe
    built = lw(project, "build", "hello-at", "hello-cm", env=deb_mirror)
    assert built.code == 0, built.err[-3000:]
    for name, words in (("hello-at", "hello from autotools"), ("hello-cm", "hello from cmake")):
        out = project.root / f"out-{name}"
        assert lw(project, "checkout", name, str(out)).code == 0
        run = subprocess.run([str(out / "usr" / "bin" / "hello")], capture_output=True, text=True)
        assert run.stdout == words + "\n"
    again = lw(project, "new", "hello-at", "--url", at)
    assert again.code == 2 and "already exists" in again.err


def test_a_new_version_replaces_whole_versions_in_urls_only() -> None:
    from lwrecipe.inputs.pinning import _with_version

    assert _with_version("https://x/v1.2/pkg-1.2.tar.gz", "1.2", "1.3") == "https://x/v1.3/pkg-1.3.tar.gz"
    assert _with_version("https://x/pkg-11.2-1.23-1.2.3.tar.gz", "1.2", "1.3") == "https://x/pkg-11.2-1.23-1.2.3.tar.gz"
    assert (
        _with_version(
            "https://github.com/llvm/llvm-project/releases/download/llvmorg-18.1.2/llvm-project-18.1.2.src.tar.xz",
            "18.1.2",
            "18.1.8",
        ).count("18.1.8")
        == 2
    )


def test_pin_on_a_file_that_is_not_toml_is_one_line(project: Project) -> None:
    project.file("recipes/bad.toml", "schema = 1\n[package\n")
    result = lw(project, "pin", "recipes/bad.toml")
    assert result.code == 2 and result.err.startswith("error: recipes/bad.toml") and result.err.count("\n") == 1, (
        result.err
    )
    assert "Traceback" not in result.err
