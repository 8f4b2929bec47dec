"""The package's shape holds: imports go one way between the stage packages
(docs/architecture.md) and no module imports itself back through another."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lwrecipe"

# Highest first: a package may import the ones after it, never those before it.
LAYERS = ("cli", "audit", "build", "remote", "inputs", "store", "recipes")
# Modules directly under lwrecipe/ that every layer may use; they import no package.
BASE = {"errors", "faults", "files", "initramfs", "safefs", "serve"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path, known: set[str]) -> set[str]:
    """Every module of the package that `path` imports, at any depth of the file
    (function-level and TYPE_CHECKING imports count: they are dependencies too)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == root.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == root.name:
                target = node.module
            else:
                continue
            for alias in node.names:  # `from pkg import module` names a module
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target)
    return {m for m in found if m in known} - {name}


def import_graph(root: Path) -> dict[str, set[str]]:
    paths = sorted(root.rglob("*.py"))
    known = {module_name(p, root) for p in paths}
    return {module_name(p, root): imports_of(p, root, known) for p in paths}


def layer(module: str) -> int | None:
    """Rank of a module's stage package (higher imports lower); None for the base."""
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS):
        return len(LAYERS) - LAYERS.index(parts[1])
    return None


def upward_imports(graph: dict[str, set[str]], root_name: str) -> list[str]:
    found = []
    for module, deps in graph.items():
        if module in (root_name, f"{root_name}.__main__"):
            continue  # the package itself (__version__) and `python -m` start the command line
        mine = layer(module)
        for dep in deps:
            theirs = layer(dep)
            if dep == root_name:
                continue  # `from lwrecipe import __version__`
            if theirs is None:
                if mine is None and dep.rsplit(".", 1)[-1] not in BASE:
                    found.append(f"{module} -> {dep}")
                continue
            if mine is None or theirs > mine:
                found.append(f"{module} -> {dep}")
    return sorted(found)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import cycle once, as the path that closes it."""
    found, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == "open":
                found.append(path[path.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def test_imports_go_one_way_between_stages() -> None:
    assert upward_imports(import_graph(PACKAGE), PACKAGE.name) == []


def test_no_import_cycles() -> None:
    assert cycles(import_graph(PACKAGE)) == []


def test_every_stage_package_says_what_it_owns() -> None:
    for name in LAYERS:
        init = PACKAGE / name / "__init__.py"
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init}: no docstring"
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(LAYERS)


@pytest.fixture
def shaped(tmp_path: Path):
    """A small package of the same shape, to show the checks find what they look for."""
    root = tmp_path / "pkg"

    def write(files: dict[str, str]) -> Path:
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        for d in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
            (d / "__init__.py").touch()
        return root

    return write


def test_an_upward_import_is_found(shaped) -> None:
    root = shaped(
        {
            "errors.py": "",
            "recipes/recipe.py": "from ..errors import X\n",
            "store/store.py": "from ..recipes import recipe\n",
            "recipes/graph.py": "def f():\n    from ..build.plan import y\n",
            "build/plan.py": "from ..store.store import Store\nfrom pkg.cli import main\n",
            "cli/__init__.py": "",
            "errors2.py": "from .store import store\n",
        }
    )
    assert upward_imports(import_graph(root), "pkg") == [
        "pkg.build.plan -> pkg.cli",
        "pkg.errors2 -> pkg.store.store",
        "pkg.recipes.graph -> pkg.build.plan",
    ]


def test_a_cycle_is_found(shaped) -> None:
    root = shaped(
        {
            "recipes/recipe.py": "def load():\n    from . import recipecache\n",
            "recipes/recipecache.py": "from .recipe import Doc\n",
        }
    )
    assert cycles(import_graph(root)) == [["pkg.recipes.recipe", "pkg.recipes.recipecache", "pkg.recipes.recipe"]]


def test_the_distribution_ships_every_package() -> None:
    """`packages = ["lwrecipe"]` built a wheel without the stage packages: the
    editable install used here hid it, a wheel or Docker install broke."""
    import tomllib

    from setuptools import find_packages

    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = config["packages"]
    listed = set(find_packages(str(PACKAGE.parent), **packages["find"]) if "find" in packages else packages)
    on_disk = {".".join(p.parent.relative_to(PACKAGE.parent).parts) for p in PACKAGE.rglob("__init__.py")}
    assert listed == on_disk


def test_http_goes_through_httpx_in_one_module() -> None:
    """HTTP is httpx's (issue #20): no module speaks http.client itself, and only
    inputs/web.py imports httpx, so what a network command loads stays in one place
    (inputs/sockets.py, the network backend under it that web.py installs, httpcore)."""
    speaking: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            for name in names:
                if name.split(".")[0] in ("httpx", "httpcore", "h11") or name.startswith("http.client"):
                    speaking.setdefault(str(path.relative_to(PACKAGE)), set()).add(name.split(".")[0])
    assert speaking == {"inputs/web.py": {"httpx", "httpcore"}, "inputs/sockets.py": {"httpcore"}}
