"""The recipe schema: every malformed recipe names its file and field, exit 2, no traceback."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from lwrecipe.core.errors import RecipeError
from lwrecipe.recipes.recipe import load_recipe
from lwrecipe.recipes.schema import GitSource, Package, PathSource, UrlSource, is_name

H = "a" * 64
REV = "970e08b0d605e63e36a99d22596e8899a1dab8b5"
PACKAGE = '[package]\nname = "demo"\nversion = "1.0"\nlicense = "MIT"\n'
SOURCE = f'[[sources]]\nurl = "https://example.org/demo-1.0.tar.gz"\nsha256 = "{H}"\nstrip = 1\n'
BUILD = '[build]\nscript = "make"\n'


def doc(
    top: str = "schema = 1\n", package: str = PACKAGE, sources: str = SOURCE, patches: str = "", build: str = BUILD
) -> str:
    return top + package + sources + patches + build


def pkg(**fields: str) -> str:
    base = {"name": '"demo"', "version": '"1.0"', "license": '"MIT"'}
    base.update(fields)
    return "[package]\n" + "".join(f"{k} = {v}\n" for k, v in base.items() if v is not None)


def src(body: str) -> str:
    return "[[sources]]\n" + body + "\n"


def url_src(**fields: str) -> str:
    base = {"url": '"https://example.org/demo-1.0.tar.gz"', "sha256": f'"{H}"'}
    base.update(fields)
    return src("".join(f"{k} = {v}\n" for k, v in base.items() if v is not None))


def build(extra: str) -> str:
    return '[build]\nscript = "make"\n' + extra + "\n"


CASES = [
    ("schema-missing", doc(top=""), "schema", "required"),
    ("schema-2", doc(top="schema = 2\n"), "schema", "unsupported schema 2"),
    ("schema-string", doc(top='schema = "1"\n'), "schema", "unsupported schema"),
    ("top-unknown-key", doc(top="schema = 1\nfoo = 1\n"), "foo", "unknown key"),
    ("package-missing", doc(package=""), "package", "required"),
    (
        "package-not-table",
        doc(top='schema = 1\npackage = "x"\n', package=""),
        "package",
        "expected a table, got string",
    ),
    ("name-missing", doc(package=pkg(name=None)), "package.name", "required"),
    ("name-upper", doc(package=pkg(name='"Demo"')), "package.name", "not a valid name"),
    ("name-underscore", doc(package=pkg(name='"de_mo"')), "package.name", "not a valid name"),
    ("name-not-stem", doc(package=pkg(name='"other"')), "package.name", "must equal the file name stem"),
    ("version-int", doc(package=pkg(version="1")), "package.version", "expected a string, got integer"),
    ("version-empty", doc(package=pkg(version='""')), "package.version", "is not a version"),
    ("version-space", doc(package=pkg(version='"1 0"')), "package.version", "is not a version"),
    ("license-missing", doc(package=pkg(license=None)), "package.license", "required"),
    ("license-empty", doc(package=pkg(license='""')), "package.license", "SPDX"),
    ("homepage-ftp", doc(package=pkg(homepage='"ftp://example.org"')), "package.homepage", "http(s) URL"),
    ("package-unknown", doc(package=pkg(maintainer='"me"')), "package.maintainer", "unknown key"),
    ("description-int", doc(package=pkg(description="3")), "package.description", "expected a string"),
    ("sha256-short", doc(sources=url_src(sha256='"abc"')), "sources[0].sha256", "not 64 lowercase hex"),
    ("sha256-upper", doc(sources=url_src(sha256=f'"{"A" * 64}"')), "sources[0].sha256", "not 64 lowercase hex"),
    ("sha256-missing", doc(sources=url_src(sha256=None)), "sources[0].sha256", "required"),
    ("url-ftp", doc(sources=url_src(url='"ftp://example.org/x.tar"')), "sources[0].url", "http(s) URL"),
    ("url-int", doc(sources=url_src(url="7")), "sources[0].url", "expected a string, got integer"),
    ("mirror-file", doc(sources=url_src(mirrors='["file:///srv/x.tar"]')), "sources[0].mirrors[0]", "http(s) URL"),
    ("mirrors-string", doc(sources=url_src(mirrors='"https://e.org/x"')), "sources[0].mirrors", "expected an array"),
    ("strip-negative", doc(sources=url_src(strip="-1")), "sources[0].strip", "must be >= 0"),
    ("strip-string", doc(sources=url_src(strip='"1"')), "sources[0].strip", "expected an integer, got string"),
    ("dest-absolute", doc(sources=url_src(dest='"/opt/x"')), "sources[0].dest", "absolute"),
    ("dest-escape", doc(sources=url_src(dest='"a/../../x"')), "sources[0].dest", "'..'"),
    ("dest-reserved", doc(sources=url_src(dest='"../out"')), "sources[0].dest", "reserved"),
    ("source-unknown-key", doc(sources=url_src(checksum='"x"')), "sources[0].checksum", "unknown key"),
    (
        "source-url-and-git",
        doc(sources=url_src(git='"https://e.org/r.git"')),
        "sources[0]",
        "exactly one of url, git, path or deb",
    ),
    ("source-no-kind", doc(sources=src('dest = "x"')), "sources[0]", "exactly one of url, git, path or deb"),
    ("sources-not-array", doc(top="schema = 1\nsources = 3\n", sources=""), "sources", "expected an array"),
    ("git-tag", doc(sources=src('git = "https://e.org/r.git"\nrev = "v1.0"')), "sources[0].rev", "40-hex commit id"),
    ("git-short-rev", doc(sources=src(f'git = "https://e.org/r.git"\nrev = "{REV[:12]}"')), "sources[0].rev", "40-hex"),
    (
        "git-ssh",
        doc(sources=src(f'git = "ssh://e.org/r.git"\nrev = "{REV}"')),
        "sources[0].git",
        "http(s), git or file URL",
    ),
    ("git-rev-missing", doc(sources=src('git = "https://e.org/r.git"')), "sources[0].rev", "required"),
    ("path-absolute", doc(sources=src('path = "/etc/passwd"')), "sources[0].path", "absolute"),
    ("path-dotdot", doc(sources=src('path = "../outside"')), "sources[0].path", "'..'"),
    ("path-missing-file", doc(sources=src('path = "nothere/x.c"')), "sources[0].path", "does not exist"),
    ("path-symlink-escape", doc(sources=src('path = "escape/passwd"')), "sources[0].path", "resolves outside"),
    (
        "same-dest",
        doc(sources=url_src() + url_src(url='"https://e.org/b.tar"')),
        "sources[1].dest",
        "already the dest of sources[0]",
    ),
    (
        "same-name",
        doc(sources=url_src(name='"a"', dest='"x"') + url_src(name='"a"', dest='"y"')),
        "sources[1].name",
        "already the name",
    ),
    ("unpack-false-no-name", doc(sources=url_src(unpack="false")), "sources[0].name", "required when unpack = false"),
    ("unpack-string", doc(sources=url_src(unpack='"no"')), "sources[0].unpack", "expected a boolean"),
    (
        "patch-file-missing",
        doc(patches='[[patches]]\nfile = "patches/none.patch"\n'),
        "patches[0].file",
        "does not exist",
    ),
    (
        "patch-two-kinds",
        doc(patches=f'[[patches]]\nfile = "p.patch"\nurl = "https://e.org/p"\nsha256 = "{H}"\n'),
        "patches[0]",
        "exactly one of file, url or source",
    ),
    ("patch-url-no-sha", doc(patches='[[patches]]\nurl = "https://e.org/p.patch"\n'), "patches[0].sha256", "required"),
    (
        "patch-unknown-source",
        doc(patches='[[patches]]\nsource = "nope"\npath = "p.patch"\n'),
        "patches[0].source",
        "no source of this recipe is named 'nope'",
    ),
    (
        "patch-strip-bool",
        doc(patches='[[patches]]\nurl = "https://e.org/p"\nsha256 = "' + H + '"\nstrip = true\n'),
        "patches[0].strip",
        "expected an integer, got boolean",
    ),
    (
        "patch-unknown-key",
        doc(patches='[[patches]]\nsource = "x"\npath = "p"\nlevel = 1\n'),
        "patches[0].level",
        "unknown key",
    ),
    ("build-missing", doc(build=""), "build", "required"),
    ("script-missing", doc(build="[build]\n"), "build.script", "required"),
    ("script-empty", doc(build='[build]\nscript = "  "\n'), "build.script", "must not be empty"),
    ("depends-bad-name", doc(build=build('depends = ["Bad_Name"]')), "build.depends[0]", "not a valid name"),
    ("depends-string", doc(build=build('depends = "musl"')), "build.depends", "expected an array"),
    ("depends-self", doc(build=build('depends = ["demo"]')), "build.depends", "depends on itself"),
    ("depends-twice", doc(build=build('depends = ["a", "a"]')), "build.depends[1]", "listed twice"),
    ("tool-path", doc(build=build('host_tools = ["/usr/bin/make"]')), "build.host_tools[0]", "bare program name"),
    ("tool-args", doc(build=build('host_tools = ["make -j2"]')), "build.host_tools[0]", "bare program name"),
    ("tool-twice", doc(build=build('host_tools = ["make", "make"]')), "build.host_tools[1]", "listed twice"),
    ("env-path", doc(build=build('env = { PATH = "/x" }')), "build.env.PATH", "cannot be overridden"),
    ("env-home", doc(build=build('env = { HOME = "/x" }')), "build.env.HOME", "cannot be overridden"),
    ("env-lw", doc(build=build('env = { LW_OUT = "/x" }')), "build.env.LW_OUT", "cannot be overridden"),
    ("env-bad-name", doc(build=build('env = { "1BAD" = "x" }')), "build.env.1BAD", "shell variable name"),
    ("env-int", doc(build=build("env = { FOO = 1 }")), "build.env.FOO", "expected a string, got integer"),
    ("build-unknown", doc(build=build("jobs = 4")), "build.jobs", "unknown key"),
    ("epoch-negative", doc(build=build("source_date_epoch = -5")), "build.source_date_epoch", "must be >= 0"),
    ("toml-syntax", "schema = 1\n[package\nname = 1\n", "line 2, column", "expected ']'"),
    ("toml-duplicate-key", "schema = 1\nschema = 2\n", "line 2", "cannot overwrite"),
]


@pytest.fixture
def demo(project):
    (project.root / "escape").symlink_to("/etc")
    project.file("p.patch", "")
    return project


@pytest.mark.parametrize("text,field,fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_recipe_names_the_field(demo, cli, text: str, field: str, fragment: str) -> None:
    demo.recipe("demo", text)
    result = cli("plan", "recipes/demo.toml")
    assert result.code == 2
    assert "Traceback" not in result.err
    lines = result.err.splitlines()
    assert any(
        line.startswith(f"error: recipes/demo.toml: {field}") and fragment.lower() in line.lower() for line in lines
    ), result.err


def test_at_least_forty_cases() -> None:
    assert len(CASES) >= 40


def test_every_problem_of_a_file_is_reported(demo, cli) -> None:
    demo.recipe("demo", doc(package=pkg(version="1"), sources=url_src(sha256='"x"')))
    result = cli("plan", "demo")
    assert "package.version" in result.err and "sources[0].sha256" in result.err


def test_valid_recipe_loads_all_kinds(demo) -> None:
    demo.file("src/hello.c", "int main(void){return 0;}\n")
    demo.file("patches/demo/0001.patch", "")
    text = doc(
        sources=url_src(mirrors='["https://mirror.example.org/demo-1.0.tar.gz"]', strip="1")
        + src(f'name = "helper"\ngit = "https://e.org/helper.git"\nrev = "{REV}"\nunpack = false')
        + src('path = "src"\ndest = "local"'),
        patches='[[patches]]\nfile = "patches/demo/0001.patch"\n'
        '[[patches]]\nsource = "helper"\npath = "patches/x.patch"\nstrip = 0\n'
        f'[[patches]]\nurl = "https://e.org/p.patch"\nsha256 = "{H}"\n',
        build=build('depends = []\nhost_tools = ["make", "cc"]\nenv = { CFLAGS = "-O2" }'),
    )
    recipe = load_recipe(demo.recipe("demo", text))
    kinds = [type(s) for s in recipe.doc.sources]
    assert kinds == [UrlSource, GitSource, PathSource]
    assert recipe.doc.patches[1].strip == 0 and recipe.doc.patches[0].strip == 1
    assert recipe.doc.build.env == {"CFLAGS": "-O2"}
    assert recipe.root == demo.root


def test_unreadable_or_missing_file(project, cli) -> None:
    result = cli("plan", "recipes/none.toml")
    assert result.code == 2 and result.err.startswith("error: recipes/none.toml")


def test_non_utf8(project, cli) -> None:
    (project.root / "recipes" / "demo.toml").write_bytes(b"schema = 1\n\xff\n")
    result = cli("plan", "demo")
    assert result.code == 2 and "not UTF-8" in result.err


def test_error_object_carries_field() -> None:
    err = RecipeError.one("r.toml", "sources[0].sha256", "bad")
    assert err.problems[0].field == "sources[0].sha256" and str(err) == "r.toml: sources[0].sha256: bad"


def test_cli_error_is_one_line_in_a_subprocess(project) -> None:
    from tests.conftest import run_subprocess

    project.recipe("demo", doc(sources=url_src(sha256='"zz"')))
    result = run_subprocess("plan", "demo", cwd=project.root)
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "error: recipes/demo.toml: sources[0].sha256: 'zz' is not 64 lowercase hex digits"
    ]
    assert os.linesep not in result.err.strip()


@pytest.mark.parametrize(
    "name, valid",
    [
        ("musl", True),
        ("gcc-13", True),
        ("0ad", True),
        ("a", True),
        ("a.b", False),
        ("a_b", False),
        ("c++", False),
        ("-a", False),
        ("Demo", False),
        ("", False),
        ("a/b", False),
        ("..", False),
    ],
)
def test_is_name_accepts_exactly_what_package_name_accepts(name: str, valid: bool) -> None:
    """One recipe-name pattern: what `new`, the remote names index and the schema check."""
    assert is_name(name) is valid
    try:
        Package.model_validate({"name": name, "version": "1", "license": "MIT"})
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted is valid
