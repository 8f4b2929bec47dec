"""Resolving `depends` into a DAG: missing recipes, cycles and a stable build order.

`topological_order` and `find_cycle` are pure; `load_graph` reads recipe files
through recipe.load_recipe and one RecipeCache. Targets are recipe paths or recipe names.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ..core.errors import GraphError, UsageError
from .recipe import Recipe, load_recipe, marked_ancestor
from .recipecache import RecipeCache


def find_cycle(deps: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle as a closed path (`[a, b, a]`), or None. Visits names in sorted order
    so the same graph always reports the same cycle."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(deps.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(deps):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def topological_order(deps: Mapping[str, Iterable[str]]) -> list[str]:
    """Dependencies before dependents; among recipes ready at once, by name."""
    cycle = find_cycle(deps)
    if cycle:
        raise GraphError("dependency cycle: " + " -> ".join(cycle))
    waiting = {n: set(d) for n, d in deps.items()}
    users: dict[str, list[str]] = {n: [] for n in deps}
    for node, ds in waiting.items():
        for d in ds:
            users.setdefault(d, []).append(node)
    ready = [n for n, ds in waiting.items() if not ds]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        node = heapq.heappop(ready)
        order.append(node)
        for user in users.get(node, ()):
            waiting[user].discard(node)
            if not waiting[user]:
                heapq.heappush(ready, user)
    return order


@dataclass(frozen=True)
class Graph:
    """Every recipe reachable from the targets, in build order."""

    recipes: Mapping[str, Recipe]
    order: tuple[str, ...]
    targets: tuple[str, ...]
    substituted: Mapping[str, Path] = field(default_factory=dict)  # --with-recipe NAME=FILE, those in the graph
    unused: tuple[str, ...] = ()  # --with-recipe names the graph does not have

    def substitutions(self, name: str) -> dict[str, dict[str, str]]:
        """The substituted recipes `name` is built with (itself included): what its
        build record notes."""
        return {
            n: {"recipe": self.recipes[n].display, "recipe_sha256": self.recipes[n].file_sha256}
            for n in self.closure([name])
            if n in self.substituted
        }

    def deps(self, name: str) -> list[str]:
        return list(self.recipes[name].depends)

    def closure(self, names: Iterable[str]) -> list[str]:
        """The names and everything they depend on, in build order."""
        wanted: set[str] = set()
        todo = list(names)
        while todo:
            name = todo.pop()
            if name not in wanted:
                wanted.add(name)
                todo.extend(self.deps(name))
        return [n for n in self.order if n in wanted]

    def dependents(self, name: str) -> list[str]:
        return [n for n in self.order if name in self.recipes[n].depends]


def project_root(start: Path) -> Path:
    return marked_ancestor(start) or start


def resolve_target(target: str, cwd: Path | None = None) -> Path:
    """A recipe path as given, or a recipe name looked up in <project>/recipes/."""
    cwd = cwd or Path.cwd()
    candidate = Path(target)
    if target.endswith(".toml") or "/" in target:
        if not candidate.is_file():
            raise UsageError(f"{target}: no such recipe file")
        return candidate.absolute()
    path = project_root(cwd) / "recipes" / f"{target}.toml"
    if not path.is_file():
        raise UsageError(f"{target}: no recipe named {target!r} ({path} does not exist)")
    return path


def parse_substitutes(specs: Iterable[str], cwd: Path | None = None) -> dict[str, Path]:
    """`--with-recipe NAME=FILE` values: NAME is built from FILE wherever the graph
    names it, instead of the project's recipe of that name."""
    found: dict[str, Path] = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            raise UsageError(f"--with-recipe {spec}: expected NAME=FILE")
        path = Path(file) if Path(file).is_absolute() else (cwd or Path.cwd()) / file
        if not path.is_file():
            raise UsageError(f"--with-recipe {spec}: {file}: no such recipe file")
        if name in found and found[name] != path.absolute():
            raise UsageError(f"--with-recipe {name}: given twice")
        found[name] = path.absolute()
    return found


def load_graph(
    targets: Iterable[str],
    loader: Callable[[Path], Recipe] | None = None,
    substitutes: Mapping[str, Path] | None = None,
) -> Graph:
    """The targets and everything they depend on. `substitutes` (--with-recipe) gives
    a recipe file to use for a name instead of the one the graph would find. By
    default recipes are loaded through this user's RecipeCache."""
    substitutes = dict(substitutes or {})
    if loader is None:
        loader = partial(load_recipe, cache=RecipeCache.for_user())

    def load(path: Path, name: str | None = None) -> Recipe:
        recipe = loader(path)
        if name is not None and recipe.name != name:
            raise UsageError(f"--with-recipe {name}={path}: that recipe is named {recipe.name!r}, not {name!r}")
        return recipe

    recipes: dict[str, Recipe] = {}
    target_names: list[str] = []
    todo: list[Recipe] = []
    for target in targets:
        if target in substitutes:
            recipe = load(substitutes[target], target)
        else:
            recipe = loader(resolve_target(target))
            if recipe.name in substitutes:
                recipe = load(substitutes[recipe.name], recipe.name)
        recipe = _add(recipes, recipe)
        target_names.append(recipe.name)
        todo.append(recipe)
    # a substitute's own dependencies are the project's recipes of those names, wherever its file lives
    home = next((r.path.parent for r in todo if r.name not in substitutes), project_root(Path.cwd()) / "recipes")
    seen: set[str] = set()
    while todo:
        recipe = todo.pop()
        if recipe.name in seen:
            continue
        seen.add(recipe.name)
        for i, dep in enumerate(recipe.depends):
            where = f"build.depends[{i}]" if i < len(recipe.doc.build.depends) else "build.environment"
            dep_path = substitutes.get(dep) or (
                home / f"{dep}.toml" if recipe.name in substitutes else dependency_path(recipe, dep)
            )
            if dep in recipes:
                if recipes[dep].path != dep_path:
                    raise GraphError(
                        f"{recipe.display}: {where}: {dep!r} resolves to {dep_path}, "
                        f"but {recipes[dep].display} is already named {dep!r}"
                    )
                continue
            if not dep_path.is_file():
                raise GraphError(f"{recipe.display}: {where}: no recipe {dep!r} (looked for {dep_path})")
            todo.append(_add(recipes, load(dep_path, dep if dep in substitutes else None)))
    order = topological_order({n: r.depends for n, r in recipes.items()})
    return Graph(
        recipes=recipes,
        order=tuple(order),
        targets=tuple(dict.fromkeys(target_names)),
        substituted={n: p for n, p in substitutes.items() if n in recipes},
        unused=tuple(sorted(set(substitutes) - set(recipes))),
    )


def dependency_path(recipe: Recipe, name: str) -> Path:
    """A dependency is the recipe of that name beside the recipe. An environment is
    shared by a project: beside the recipe if there is one, else in <root>/recipes/."""
    beside = recipe.path.parent / f"{name}.toml"
    if name != recipe.environment or beside.is_file():
        return beside
    return recipe.root / "recipes" / f"{name}.toml"


def _add(recipes: dict[str, Recipe], recipe: Recipe) -> Recipe:
    existing = recipes.get(recipe.name)
    if existing is not None and existing.path != recipe.path:
        raise GraphError(f"{recipe.display}: two recipes are named {recipe.name!r} (the other is {existing.display})")
    recipes.setdefault(recipe.name, recipe)
    return recipes[recipe.name]
