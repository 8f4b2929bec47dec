"""Real builds: host cc, GNU patch, bubblewrap, clang-16/wasm-ld-16, sources over loopback HTTP."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import run_subprocess
from tests.servers import fault_server

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]

HELLO_C = b'#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'
PATCH = """--- a/hello.c
+++ b/hello.c
@@ -1,2 +1,2 @@
 #include <stdio.h>
-int main(void) { puts("hello"); return 0; }
+int main(void) { puts("hello, patched"); return 0; }
"""


def tarball(files: dict[str, bytes], top: str = "hello-1.0") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def served():
    with fault_server() as srv:
        yield srv


def recipe(
    name: str,
    url: str,
    sha: str,
    script: str,
    tools: str = '"cc", "as", "ld", "mkdir"',
    extra: str = "",
    depends: str = "",
) -> str:
    return (
        f'schema = 1\n[package]\nname = "{name}"\nversion = "1.0"\nlicense = "MIT"\n'
        f'[[sources]]\nurl = "{url}"\nsha256 = "{sha}"\nstrip = 1\n{extra}\n'
        f"[build]\ndepends = [{depends}]\nhost_tools = [{tools}]\nscript = '''\n{script}\n'''\n"
    )


@pytest.fixture
def hello(project, served):
    data = tarball({"hello.c": HELLO_C})
    url = served.add("/hello-1.0.tar.gz", data)
    project.file("patches/hello/0001-patched.patch", PATCH)
    project.recipe(
        "hello",
        recipe(
            "hello",
            url,
            hashlib.sha256(data).hexdigest(),
            'mkdir -p "$LW_OUT/bin"\ncc -O2 -o "$LW_OUT/bin/hello" hello.c',
            extra='[[patches]]\nfile = "patches/hello/0001-patched.patch"',
        ),
    )
    return project


def build(project, *args: str, cache: str = "cache"):
    return run_subprocess("--cache", str(project.root / cache), "build", *args, cwd=project.root)


def record_of(project, cache: str = "cache") -> dict:
    [path] = (project.root / cache / "ac").iterdir()
    return json.loads(path.read_text())


def test_build_patch_sandbox_and_cache_hit(hello, served) -> None:
    first = build(hello, "hello")
    assert first.code == 0, first.err
    assert "1 built, 0 cached" in first.err
    record = record_of(hello)
    assert record["sandbox"] == "bubblewrap" and record["name"] == "hello"
    out = hello.root / "out"
    assert run_subprocess("--cache", str(hello.root / "cache"), "checkout", "hello", str(out), cwd=hello.root).code == 0
    assert subprocess.run([out / "bin" / "hello"], capture_output=True, text=True).stdout == "hello, patched\n"
    ac = next((hello.root / "cache" / "ac").iterdir())
    before = ac.stat().st_mtime_ns
    second = build(hello, "hello")
    assert second.code == 0 and "0 built, 1 cached" in second.err and "building" not in second.err
    assert ac.stat().st_mtime_ns == before and served.hits["/hello-1.0.tar.gz"] == 1


def test_two_caches_give_identical_outputs(hello) -> None:
    assert build(hello, "hello", cache="c1").code == 0
    in_image = run_subprocess(
        "--cache",
        str(hello.root / "c2"),
        "build",
        "hello",
        cwd=hello.root,
        env={"LWRECIPE_BUILD_IMAGE": "lwrecipe-build-host:1"},
    )
    assert in_image.code == 0
    assert record_of(hello, "c1")["output_id"] == record_of(hello, "c2")["output_id"]
    assert record_of(hello, "c1")["build_image"] is None
    assert record_of(hello, "c2")["build_image"] == "lwrecipe-build-host:1"


LEAKY = """mkdir -p "$LW_OUT/info"
pwd > "$LW_OUT/info/pwd"
umask > "$LW_OUT/info/umask"
env | sort > "$LW_OUT/info/env"
for f in c b a; do echo "$f" > "$LW_OUT/info/$f"; done
ls -la "$LW_OUT/info" > "$LW_OUT/listing" 2>&1 || true
"""


def test_leaky_build_is_still_bit_identical(project, served, monkeypatch) -> None:
    data = tarball({"x": b"x"})
    url = served.add("/leak.tar.gz", data)
    project.recipe(
        "leak", recipe("leak", url, hashlib.sha256(data).hexdigest(), LEAKY, tools='"mkdir", "env", "sort", "ls"')
    )
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    first = run_subprocess("--cache", str(project.root / "c1"), "build", "leak", cwd=project.root)
    assert first.code == 0, first.err
    second = run_subprocess(
        "--cache",
        str(project.root / "c2"),
        "build",
        "leak",
        cwd=project.root,
        env={"SECRET_TOKEN": "other", "TZ": "Asia/Tokyo"},
    )
    assert second.code == 0
    assert record_of(project, "c1")["output_id"] == record_of(project, "c2")["output_id"]
    out = project.root / "o"
    run_subprocess("--cache", str(project.root / "c1"), "checkout", "leak", str(out), cwd=project.root)
    env = (out / "info" / "env").read_text()
    assert "hunter2" not in env and "SECRET_TOKEN" not in env
    assert (out / "info" / "pwd").read_text() == "/build/src\n"
    assert (out / "info" / "umask").read_text() == "0022\n"


def test_sandbox_blocks_network_and_host_writes(project, served, tmp_path) -> None:
    data = tarball({"x": b"x"})
    url = served.add("/s.tar.gz", data)
    marker = Path("/tmp") / f"lwrecipe-escape-{tmp_path.name}"
    script = f"""mkdir -p "$LW_OUT"
if (exec 3<>/dev/tcp/127.0.0.1/{served.port}) 2>/dev/null; then echo open > "$LW_OUT/net"; else echo blocked > "$LW_OUT/net"; fi
if echo x > {marker} 2>/dev/null; then echo wrote > "$LW_OUT/tmp"; fi
if echo x > /etc/lwrecipe-escape 2>/dev/null; then echo wrote > "$LW_OUT/etc"; else echo blocked > "$LW_OUT/etc"; fi
if ls /root >/dev/null 2>&1 && [ -n "$(ls -A /root 2>/dev/null)" ]; then echo visible > "$LW_OUT/root"; else echo hidden > "$LW_OUT/root"; fi
"""
    project.recipe("s", recipe("s", url, hashlib.sha256(data).hexdigest(), script, tools='"mkdir", "ls"'))
    assert build(project, "s").code == 0
    out = project.root / "o"
    run_subprocess("--cache", str(project.root / "cache"), "checkout", "s", str(out), cwd=project.root)
    assert (out / "net").read_text() == "blocked\n"
    assert (out / "etc").read_text() == "blocked\n"
    assert (out / "root").read_text() == "hidden\n"
    assert not marker.exists()


def test_missing_tool_refuses_with_debian_package(project, served) -> None:
    data = tarball({"x": b"x"})
    url = served.add("/m.tar.gz", data)
    project.recipe("m", recipe("m", url, hashlib.sha256(data).hexdigest(), "true", tools='"cpio", "no-such-tool-zz"'))
    result = build(project, "m")
    assert result.code == 1
    assert "error: m: host tool 'no-such-tool-zz' not found on PATH" in result.err
    plan = run_subprocess("plan", "m", cwd=project.root)
    assert plan.code == 0 and "missing tool: no-such-tool-zz" in plan.out


def test_missing_known_tool_names_its_package(project, served, tmp_path) -> None:
    only_bash = tmp_path / "bin"
    only_bash.mkdir()
    (only_bash / "bash").symlink_to(shutil.which("bash"))
    data = tarball({"x": b"x"})
    url = served.add("/m.tar.gz", data)
    project.recipe("m", recipe("m", url, hashlib.sha256(data).hexdigest(), "true", tools='"cmake"'))
    result = run_subprocess(
        "--cache", str(project.root / "cache"), "build", "m", cwd=project.root, env={"PATH": str(only_bash)}
    )
    assert "host tool 'cmake' not found on PATH (Debian package: cmake)" in result.err


def test_patch_that_needs_fuzz_fails_naming_file_and_hunk(project, served) -> None:
    data = tarball({"hello.c": b"#include <stdio.h>\nint main(void) { return 1; }\n"})
    url = served.add("/h.tar.gz", data)
    project.file("patches/h/0001.patch", PATCH)
    project.recipe(
        "h",
        recipe("h", url, hashlib.sha256(data).hexdigest(), "true", extra='[[patches]]\nfile = "patches/h/0001.patch"'),
    )
    result = build(project, "h")
    assert result.code == 1
    assert "error: h: patches[0] (patches/h/0001.patch) does not apply: hello.c: Hunk #1 FAILED" in result.err


def test_patch_escaping_the_tree_is_refused_before_patch_runs(project, served) -> None:
    data = tarball({"x": b"x"})
    url = served.add("/e.tar.gz", data)
    project.file("patches/e/0001.patch", "--- a/../../etc/x\n+++ b/../../etc/x\n@@ -0,0 +1 @@\n+x\n")
    project.recipe(
        "e",
        recipe("e", url, hashlib.sha256(data).hexdigest(), "true", extra='[[patches]]\nfile = "patches/e/0001.patch"'),
    )
    result = build(project, "e")
    assert result.code == 3 and "writes outside the tree" in result.err


def test_failed_build_prints_log_tail(project, served) -> None:
    data = tarball({"x": b"x"})
    url = served.add("/f.tar.gz", data)
    project.recipe(
        "f", recipe("f", url, hashlib.sha256(data).hexdigest(), "echo about to fail\nexit 7", tools='"mkdir"')
    )
    result = build(project, "f")
    assert result.code == 1 and "exited with status 7" in result.err and "about to fail" in result.err
    assert not list((project.root / "cache" / "ac").iterdir())


def test_a_fully_cached_build_imports_no_http_stack(hello) -> None:
    """Nor grpc and the REAPI protos, nor the provenance libraries: a no-op build
    loads none of what only the network, REAPI remotes or new builds need."""
    assert build(hello, "hello").code == 0
    code = (
        "import sys\nfrom lwrecipe.cli import main\n"
        f"code = main(['--cache', {str(hello.root / 'cache')!r}, 'build', 'hello'])\n"
        "print(code, sorted({m.split('.')[0] for m in sys.modules} & {'httpx', 'httpcore', 'h11', 'ssl', 'grpc', "
        "'buildgrid', 'google', 'securesystemslib', 'in_toto_attestation'}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=hello.root, capture_output=True, text=True)
    assert proc.stdout.strip() == "0 []", proc.stderr
