"""Hostile documents lwrecipe reads on the host: recipes, the project's
lwrecipe.toml, the user's config and the lockfile. Whatever a stranger puts in
them — nesting a hundred thousand deep, a 200 MB file, bytes that are not UTF-8,
an integer of 5000 digits, a lockfile whose fields are missing or of the wrong
type — the answer is one `error:` line naming the file, exit 2, never a
traceback. Each command runs in a child process whose address space is capped at
2 GiB, so a parser that blows up in memory fails the test instead of the machine."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Project, Result, script_recipe

AS_LIMIT = 2 << 30
DEEP = 100_000
DEADLINE = 300  # seconds: only a command that waits forever comes near it


def run_capped(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Result:
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))

    try:
        proc = subprocess.run(
            [sys.executable, "-I", "-m", "lwrecipe", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            errors="replace",
            env={**os.environ, **(env or {})},
            preexec_fn=cap,
            timeout=DEADLINE,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"lwrecipe {' '.join(args)} did not finish in {DEADLINE} s (waiting on a FIFO?): {exc.stderr!r}")
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_one_error(result: Result, names: str, code: int = 2) -> None:
    assert "Traceback" not in result.err, result.err[-2000:]
    lines = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert result.code == code and lines and names in lines[0], result.err[-2000:]


def sparse(path: Path, head: bytes, size: int) -> None:
    """A file of `size` bytes that costs no disk: `head`, then a hole."""
    with path.open("wb") as fh:
        fh.write(head)
        fh.truncate(size)


# What is written, as bytes; each is hostile in a different way.
HOSTILE: dict[str, bytes] = {
    "deep arrays": b"a = " + b"[" * DEEP,
    "deep inline tables": b"a = " + b"{b=" * DEEP,
    "deep dotted key": b"a" + b".a" * DEEP + b" = 1\n",
    "deep table header": b"[a" + b".a" * DEEP + b"]\n",
    "deep array of tables": b"[[a" + b".a" * DEEP + b"]]\n",
    "invalid UTF-8": b'schema = 1\nx = "\xff\xfe"\n',
    "UTF-8 encoded surrogate": b'schema = 1\nx = "\xed\xa0\x80"\n',
    "escaped lone surrogate": b'schema = 1\nx = "\\ud800"\n',
    "5000-digit integer": b"schema = " + b"7" * 5000 + b"\n",
    "not TOML": b"schema = = 1\n",
}


@pytest.fixture
def project(project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("LWRECIPE_CONFIG", str(tmp_path / "no-config.toml"))
    for var in ("LWRECIPE_REMOTES", "LWRECIPE_SIGNING_KEY", "LWRECIPE_TRUSTED_KEYS"):
        monkeypatch.delenv(var, raising=False)
    project.recipe("pkg", script_recipe("pkg", 'mkdir -p "$LW_OUT"', 'host_tools = ["mkdir"]'))
    project.file("lockfile.toml", "lockfile = 1\n")
    return project


def place(project: Project, tmp_path: Path, where: str) -> tuple[Path, list[str], dict[str, str]]:
    """The file `where` names, the command that reads it, and its environment."""
    if where == "recipe":
        return project.root / "recipes" / "pkg.toml", ["show", "pkg"], {}
    if where == "project config":
        return project.root / "lwrecipe.toml", ["plan", "pkg"], {}
    if where == "user config":
        path = tmp_path / "user.toml"
        return path, ["plan", "pkg"], {"LWRECIPE_CONFIG": str(path)}
    return project.root / "lockfile.toml", ["audit"], {}


PLACES = ["recipe", "project config", "user config", "lockfile"]


@pytest.mark.parametrize("where", PLACES)
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_toml_file_is_one_error_line_naming_it(
    project: Project, tmp_path: Path, where: str, kind: str
) -> None:
    path, command, env = place(project, tmp_path, where)
    path.write_bytes(HOSTILE[kind])
    result = run_capped("--cache", str(tmp_path / "cache"), *command, cwd=project.root, env=env)
    assert_one_error(result, path.name)


@pytest.mark.parametrize("where", PLACES)
def test_a_200_mb_toml_file_is_refused_by_its_size_before_it_is_parsed(
    project: Project, tmp_path: Path, where: str
) -> None:
    path, command, env = place(project, tmp_path, where)
    sparse(path, b"# " + b"x" * 60 + b"\n", 200 << 20)
    result = run_capped("--cache", str(tmp_path / "cache"), *command, cwd=project.root, env=env)
    assert_one_error(result, path.name)
    assert "larger than" in result.err, result.err


@pytest.mark.parametrize("where", PLACES)
def test_a_fifo_in_place_of_a_toml_file_is_refused_not_waited_on(project: Project, tmp_path: Path, where: str) -> None:
    path, command, env = place(project, tmp_path, where)
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    result = run_capped("--cache", str(tmp_path / "cache"), *command, cwd=project.root, env=env)
    assert_one_error(result, path.name)  # a recipe that is not a file is not found; the others are refused


ENTRY = """lockfile = 1
[recipe.pkg]
version = "1"
license = "MIT"
recipe = "recipes/pkg.toml"
recipe_sha256 = "{zero}"
depends = []
key = "{zero}"
output_id = ""
platform = "x86_64-linux"
source_date_epoch = 315532800
script = "true"
env = {{}}
dep_outputs = {{}}
host_tools = {{}}
sources = [{{kind = "url", url = "https://example.invalid/x", mirrors = [], sha256 = "{zero}", strip = 1, dest = ".", unpack = true}}]
patches = []
""".format(zero="0" * 64)

# (what is changed in ENTRY, the field the error names)
BROKEN_LOCKS = {
    "entry not a table": ("[recipe.pkg]\n", "[recipe]\npkg = 5\n[recipe.other]\n", "recipe.pkg"),
    "missing sources": ("sources = [", "xsources = [", "recipe.pkg.sources"),
    "sources a string": ('sources = [{kind = "url"', 'sources = "no"\nxs = [{kind = "url"', "recipe.pkg.sources"),
    "source without kind": ('{kind = "url", ', "{", "recipe.pkg.sources[0]"),
    "host tool not a table": ("host_tools = {}", "host_tools = {cp = 5}", "recipe.pkg.host_tools.cp"),
    "version an integer": ('version = "1"', "version = 1", "recipe.pkg.version"),
    "epoch a string": ("source_date_epoch = 315532800", 'source_date_epoch = "x"', "recipe.pkg.source_date_epoch"),
    "env of arrays": ("env = {}", "env = {A = [1]}", "recipe.pkg.env.A"),
    "recipe table an array": ("[recipe.pkg]\n", "recipe = [1]\n[x]\n", "recipe"),
}


@pytest.mark.parametrize("command", [["audit"], ["build", "pkg", "--locked", "--offline"], ["why", "pkg"]])
@pytest.mark.parametrize("kind", sorted(BROKEN_LOCKS))
def test_a_lockfile_with_missing_or_mistyped_fields_is_one_line_naming_the_field(
    project: Project, tmp_path: Path, command: list[str], kind: str
) -> None:
    old, new, field = BROKEN_LOCKS[kind]
    assert old in ENTRY
    project.file("lockfile.toml", ENTRY.replace(old, new, 1))
    result = run_capped("--cache", str(tmp_path / "cache"), *command, cwd=project.root)
    assert_one_error(result, f"lockfile.toml: {field}")


# `cache push` and `cache gc --keep-locked` read only each entry's key and output id.
BROKEN_PINS = {k: BROKEN_LOCKS[k] for k in ("entry not a table", "recipe table an array")} | {
    "key an integer": ('key = "' + "0" * 64 + '"', "key = 5", "recipe.pkg.key"),
    "output id a table": ('output_id = ""', "output_id = {a = 1}", "recipe.pkg.output_id"),
}


@pytest.mark.parametrize(
    "command", [["cache", "push", "REMOTE"], ["cache", "gc", "--keep-locked", "--older-than", "1"]]
)
@pytest.mark.parametrize("kind", sorted(BROKEN_PINS))
def test_a_lockfile_whose_pins_are_mistyped_is_one_line_for_push_and_gc(
    project: Project, tmp_path: Path, command: list[str], kind: str
) -> None:
    old, new, field = BROKEN_PINS[kind]
    assert old in ENTRY
    project.file("lockfile.toml", ENTRY.replace(old, new, 1))
    command = [str(tmp_path / "remote") if c == "REMOTE" else c for c in command]
    result = run_capped("--cache", str(tmp_path / "cache"), *command, cwd=project.root)
    assert_one_error(result, f"lockfile.toml: {field}")


def test_the_sound_lockfile_fixture_is_read(project: Project, tmp_path: Path) -> None:
    """The fixture the broken lockfiles start from is itself accepted, so each of them
    fails for the one change it makes."""
    project.file("lockfile.toml", ENTRY)
    result = run_capped("--cache", str(tmp_path / "cache"), "why", "pkg", cwd=project.root)
    assert "Traceback" not in result.err and "lockfile.toml" not in result.err, result.err


# A number no deadline can be made of: infinite, not a number, absurdly large, or no pace at all.
BAD_NUMBERS: dict[str, tuple[str, str]] = {
    "remote timeout inf": ('[[remote]]\nurl = "http://127.0.0.1:1"\ntimeout = inf\n', "remote[0].timeout"),
    "remote timeout 1e309": ('[[remote]]\nurl = "http://127.0.0.1:1"\ntimeout = 1e309\n', "remote[0].timeout"),
    "remote timeout nan": ('[[remote]]\nurl = "http://127.0.0.1:1"\ntimeout = nan\n', "remote[0].timeout"),
    "remote timeout a year": ('[[remote]]\nurl = "http://127.0.0.1:1"\ntimeout = 31536000\n', "remote[0].timeout"),
    "remote min_rate 0": ('[[remote]]\nurl = "http://127.0.0.1:1"\nmin_rate = 0\n', "remote[0].min_rate"),
    "remote min_rate inf": ('[[remote]]\nurl = "http://127.0.0.1:1"\nmin_rate = inf\n', "remote[0].min_rate"),
    "network timeout inf": ("[network]\ntimeout = inf\n", "network.timeout"),
    "network min_rate 0": ("[network]\nmin_rate = 0\n", "network.min_rate"),
    "network min_rate nan": ("[network]\nmin_rate = nan\n", "network.min_rate"),
    "build timeout 1e300": ("[build]\ntimeout = 1e300\n", "build.timeout"),
    "build max_silent_time inf": ("[build]\nmax_silent_time = inf\n", "build.max_silent_time"),
}


@pytest.mark.parametrize("where", ["project config", "user config"])
@pytest.mark.parametrize("kind", sorted(BAD_NUMBERS))
def test_a_config_number_no_deadline_can_be_made_of_is_one_error_line(
    project: Project, tmp_path: Path, where: str, kind: str
) -> None:
    path, command, env = place(project, tmp_path, where)
    text, field = BAD_NUMBERS[kind]
    path.write_text(text)
    result = run_capped("--cache", str(tmp_path / "cache"), *command, cwd=project.root, env=env)
    assert_one_error(result, f"{path.name}: {field}")


# URLs urllib cannot split (an unclosed IPv6 bracket) or whose port is no port.
BAD_URLS = [
    "http://[::1",
    "http://[::1/x.tar.gz",
    "http://[zz]/x.tar.gz",
    "http://example.org:99999/x.tar.gz",
    "http://example.org:port/x.tar.gz",
]


def url_recipe(field: str, url: str) -> str:
    source = {
        "url": f'url = "{url}"\n',
        "mirrors": f'url = "http://example.org/x.tar.gz"\nmirrors = ["{url}"]\n',
        "git": f'git = "{url.replace(".tar.gz", ".git")}"\nrev = "{"0" * 40}"\n',
    }[field]
    return (
        f'schema = 1\n[package]\nname = "bad"\nversion = "1"\nlicense = "MIT"\n[[sources]]\n{source}'
        + ("" if field == "git" else f'sha256 = "{"0" * 64}"\n')
        + '[build]\nscript = "true"\n'
    )


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.parametrize("field", ["url", "mirrors", "git"])
def test_a_recipe_url_that_is_no_url_is_one_error_line(project: Project, tmp_path: Path, field: str, url: str) -> None:
    project.recipe("bad", url_recipe(field, url))
    result = run_capped("--cache", str(tmp_path / "cache"), "fetch", "bad", cwd=project.root)
    assert_one_error(result, f"bad.toml: sources[0].{field}")


@pytest.mark.parametrize("where", ["project config", "user config"])
@pytest.mark.parametrize(
    "table, url",
    [
        (table, url)
        for table in ("remote", "files", "debian", "git")
        for url in ("http://[::1", "http://example.org:99999")
    ]
    + [("remote", "grpc://[zz")],
)
def test_a_config_url_that_is_no_url_is_one_error_line(
    project: Project, tmp_path: Path, where: str, table: str, url: str
) -> None:
    path, _, env = place(project, tmp_path, where)
    text = {
        "remote": f'[[remote]]\nurl = "{url}"\n',
        "files": f'[mirrors]\nfiles = ["{url}"]\n',
        "debian": f'[mirrors.debian]\n"http://example.org/" = ["{url}"]\n',
        "git": f'[mirrors.git]\n"http://example.org/" = ["{url}"]\n',
    }[table]
    path.write_text(text)
    flags = ["--accept-project-config"] if where == "project config" else []  # git mirrors apply only then
    command = "plan" if table == "remote" else "fetch"  # what reads the remotes, the mirrors
    result = run_capped(*flags, "--cache", str(tmp_path / "cache"), command, "pkg", cwd=project.root, env=env)
    field = "remote.url" if table == "remote" else f"mirrors.{table}"
    assert_one_error(result, f"{path.name}: {field}")


@pytest.mark.parametrize(
    "how", ["--remote", "LWRECIPE_REMOTES", "LWRECIPE_MIRRORS", "LWRECIPE_DEBIAN_MIRRORS", "LWRECIPE_GIT_MIRRORS"]
)
def test_a_url_the_user_gives_that_is_no_url_is_one_error_line(project: Project, tmp_path: Path, how: str) -> None:
    url = "http://[::1"
    args, env = {
        "--remote": (["--remote", url], {}),
        "LWRECIPE_REMOTES": ([], {how: url}),
        "LWRECIPE_MIRRORS": ([], {how: url}),
        "LWRECIPE_DEBIAN_MIRRORS": ([], {how: f"http://example.org/={url}"}),
        "LWRECIPE_GIT_MIRRORS": ([], {how: f"http://example.org/={url}"}),
    }[how]
    command = "plan" if "REMOTE" in how.upper() else "fetch"
    result = run_capped("--cache", str(tmp_path / "cache"), command, "pkg", *args, cwd=project.root, env=env)
    assert_one_error(result, url)


def test_an_internal_error_is_one_line_not_a_traceback(project: Project, tmp_path: Path) -> None:
    """The last resort: an exception lwrecipe did not expect (here the standard
    library's os.getcwd failing, with a terminal escape in its text) is one
    escaped line and exit 1; LWRECIPE_TRACEBACK=1 shows the traceback too."""
    code = (
        "import os, sys\n"
        "def broken(): raise RuntimeError('no cwd \\x1b[2J here')\n"
        "os.getcwd = broken\n"
        "from lwrecipe.cli.main import main\n"
        "sys.exit(main(['--cache', sys.argv[1], 'plan', 'pkg']))\n"
    )
    command = [sys.executable, "-I", "-c", code, str(tmp_path / "cache")]
    env = {k: v for k, v in os.environ.items() if k != "LWRECIPE_TRACEBACK"}
    proc = subprocess.run(command, cwd=project.root, capture_output=True, text=True, env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "\x1b" not in proc.stderr, proc.stderr
    assert proc.stderr == (
        "error: internal error: RuntimeError: no cwd \\x1b[2J here (a bug in lwrecipe; "
        "LWRECIPE_TRACEBACK=1 prints the traceback)\n"
    ), proc.stderr
    shown = subprocess.run(
        command, cwd=project.root, capture_output=True, text=True, env={**env, "LWRECIPE_TRACEBACK": "1"}
    )
    assert shown.returncode == 1 and "Traceback" in shown.stderr and "in broken" in shown.stderr, shown.stderr
