"""The package's shape holds: imports go one way between the stage packages
(docs/architecture.md) and no module imports itself back through another."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lwrecipe"

# Which parts of the package each part may import (docs/architecture.md draws
# this). A part is a package under lwrecipe/ or a module directly in it; an
# edge not listed here is a dependency the design does not have.
ALLOWED: dict[str, set[str]] = {
    "cli": {"audit", "build", "remote", "inputs", "store", "recipes", "core", "serve"},
    "audit": {"build", "remote", "inputs", "store", "recipes", "core"},
    "build": {"remote", "inputs", "store", "recipes", "core"},
    "remote": {"inputs", "store", "recipes", "core"},
    "inputs": {"store", "recipes", "core"},
    "store": {"core"},
    "recipes": {"core"},
    "core": set(),
    "serve": {"core"},
    "initramfs": set(),
}
# `lwrecipe` itself (its __version__) may be imported by any part; `python -m
# lwrecipe` starts the command line.
ROOT_EDGES = {"__main__": {"cli"}}


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
                if f"{target}.{alias.name}" in known:
                    found.add(f"{target}.{alias.name}")
                elif is_package(root, target) and alias.name not in defined_in(root, target):
                    found.add(f"{target}.{alias.name}")  # neither a module nor a name: reported below
                else:
                    found.add(target)
    unknown = found - known
    if unknown:
        raise ImportError(f"{name} imports {', '.join(sorted(unknown))}: no such module")
    return found - {name}


def is_package(root: Path, module: str) -> bool:
    return (root / Path(*module.split(".")[1:]) / "__init__.py").exists()


def defined_in(root: Path, package: str) -> set[str]:
    """The names a package's __init__.py binds at its top level."""
    path = root / Path(*package.split(".")[1:]) / "__init__.py"
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def import_graph(root: Path) -> dict[str, set[str]]:
    paths = sorted(root.rglob("*.py"))
    known = {module_name(p, root) for p in paths}
    return {module_name(p, root): imports_of(p, root, known) for p in paths}


def part(module: str) -> str | None:
    """The part of the package a module belongs to; None for the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def forbidden_edges(graph: dict[str, set[str]], allowed: dict[str, set[str]]) -> list[str]:
    found = []
    for module, deps in graph.items():
        mine = part(module)
        for dep in deps:
            theirs = part(dep)
            if theirs is None or theirs == mine:
                continue  # `from lwrecipe import __version__`; a part's own modules
            may = ROOT_EDGES[mine] if mine in ROOT_EDGES else allowed.get(mine or "", set())
            if theirs not in may:
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


def test_imports_follow_the_allowed_edges() -> None:
    assert forbidden_edges(import_graph(PACKAGE), ALLOWED) == []


def test_no_import_cycles() -> None:
    assert cycles(import_graph(PACKAGE)) == []


def test_the_allowed_edges_have_no_cycle_and_name_every_part() -> None:
    edges = {name: set(deps) for name, deps in ALLOWED.items()}
    assert cycles({f"p.{n}": {f"p.{d}" for d in deps} for n, deps in edges.items()}) == []
    on_disk = {p.stem for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert on_disk - {"__init__", "__main__"} == set(ALLOWED)
    assert all(dep in ALLOWED for deps in ALLOWED.values() for dep in deps)


def test_every_package_says_what_it_owns() -> None:
    for init in sorted(PACKAGE.rglob("__init__.py")):
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init}: no docstring"


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


def test_an_edge_the_design_does_not_have_is_found(shaped) -> None:
    root = shaped(
        {
            "core/errors.py": "",
            "recipes/recipe.py": "from ..core.errors import X\n",
            "store/store.py": "from ..recipes import recipe\n",
            "recipes/graph.py": "def f():\n    from ..build.plan import y\n",
            "build/plan.py": "from ..store.store import Store\nfrom pkg.cli import main\n",
            "cli/__init__.py": "main = None\n",
            "serve.py": "from .store import store\n",
        }
    )
    assert forbidden_edges(import_graph(root), ALLOWED) == [
        "pkg.build.plan -> pkg.cli",
        "pkg.recipes.graph -> pkg.build.plan",
        "pkg.serve -> pkg.store.store",
        "pkg.store.store -> pkg.recipes.recipe",
    ]


def test_an_import_of_a_module_that_does_not_exist_fails(shaped) -> None:
    """An unresolvable target was once skipped silently, so a typo or a stale
    path after a move passed the check."""
    root = shaped({"store/store.py": "from ..core.gone import X\n", "core/errors.py": ""})
    with pytest.raises(ImportError, match="pkg.core.gone"):
        import_graph(root)
    root = shaped({"store/store.py": "from .. import faults\n", "core/faults.py": ""})
    with pytest.raises(ImportError, match="pkg.faults"):
        import_graph(root)


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
