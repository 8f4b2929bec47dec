"""The recipe file: reading one into a `Recipe`, with the checks that need its path.

What a recipe may say is schema.py's; validated documents are remembered by a
recipecache.RecipeCache the caller holds. Resolving `depends` is graph.py's job;
pinning the inputs to hashes is plan.py's. Every problem is reported as
`<file>: <field>: <what>` through RecipeError, all problems of a file at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ..core.digests import Sha256, sha256_bytes
from ..core.documents import RECIPE_LIMIT, parse_toml, read_file
from ..core.errors import DocumentError, Problem, RecipeError
from .keys import built_on
from .messages import recipe_error
from .recipecache import RecipeCache
from .schema import FilePatch, GitSource, PathSource, RecipeDoc, UrlSource, cross_field_problems

PROJECT_MARKERS = ("lwrecipe.toml", ".git")


@dataclass(frozen=True)
class Recipe:
    """A validated recipe and where it came from."""

    path: Path  # absolute
    root: Path  # the project root that in-repo paths are relative to
    display: str  # how messages name the file
    doc: RecipeDoc
    file_sha256: Sha256

    @property
    def name(self) -> str:
        return self.doc.package.name

    @property
    def version(self) -> str:
        return self.doc.package.version

    @property
    def depends(self) -> list[str]:
        """The recipes whose outputs this build takes: its dependencies and its environment."""
        build = self.doc.build
        if build.environment and build.environment not in build.depends:
            return [*build.depends, build.environment]
        return build.depends

    @property
    def environment(self) -> str | None:
        return self.doc.build.environment

    @property
    def built_on(self) -> str:
        return built_on(self.doc.build.environment, self.doc.build.bootstrap)

    @property
    def pinned_root(self) -> bool:
        """Built on pinned content (an environment, or its own sources), not on host tools."""
        return bool(self.doc.build.environment or self.doc.build.bootstrap)

    def source_named(self, name: str) -> UrlSource | GitSource | PathSource | None:
        return next((s for s in self.doc.sources if s.name == name), None)


def marked_ancestor(start: Path) -> Path | None:
    """`start` or its nearest ancestor that holds lwrecipe.toml or .git."""
    for parent in [start, *start.parents]:
        if any((parent / marker).exists() for marker in PROJECT_MARKERS):
            return parent
    return None


def find_root(recipe_path: Path) -> Path:
    """The project root of a recipe: the marked ancestor, else the recipe directory's parent."""
    return marked_ancestor(recipe_path.parent) or recipe_path.parent.parent


def display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_recipe(path: Path, root: Path | None = None, cache: RecipeCache | None = None) -> Recipe:
    """The recipe in the file `path`, its in-repo paths relative to `root` (by default
    the project root around it); `cache` as for parse_recipe."""
    path = path.absolute()
    shown = display_path(path)
    try:
        data = read_file(path, RECIPE_LIMIT, shown)
    except DocumentError as exc:
        raise recipe_error(shown, exc) from None
    except OSError as exc:
        raise RecipeError.one(shown, "", f"cannot read: {exc.strerror or exc}") from None
    doc = parse_recipe(data, shown, cache)
    root = (root or find_root(path)).absolute()
    problems = cross_field_problems(doc) + _file_problems(doc, path, root)
    if problems:
        raise RecipeError(shown, problems)
    return Recipe(path=path, root=root, display=shown, doc=doc, file_sha256=sha256_bytes(data))


def parse_recipe(data: bytes, shown: str, cache: RecipeCache | None = None) -> RecipeDoc:
    """Parse and validate the bytes of a recipe; `shown` names it in messages.
    With a `cache`, bytes validated before are taken from it and new ones put in it."""
    doc = cache.get(data) if cache is not None else None
    if doc is None:
        doc = validate(data, shown)
        if cache is not None:
            cache.put(data, doc)
    return doc


def validate(data: bytes, shown: str) -> RecipeDoc:
    """The document the bytes of a recipe say, or a RecipeError naming every problem."""
    try:
        return RecipeDoc.model_validate(parse_toml(data, shown))
    except (DocumentError, ValidationError) as exc:
        raise recipe_error(shown, exc) from None


def _file_problems(doc: RecipeDoc, path: Path, root: Path) -> list[Problem]:
    """Checks that need the file system: the file name, and in-repo paths."""
    problems: list[Problem] = []
    if doc.package.name != path.stem:
        problems.append(Problem("package.name", f"{doc.package.name!r} must equal the file name stem {path.stem!r}"))
    in_repo = [(f"sources[{i}].path", s.path) for i, s in enumerate(doc.sources) if isinstance(s, PathSource)]
    in_repo += [(f"patches[{i}].file", p.file) for i, p in enumerate(doc.patches) if isinstance(p, FilePatch)]
    resolved_root = root.resolve()
    for field, rel in in_repo:
        target = (root / rel).resolve()
        if not target.is_relative_to(resolved_root):
            problems.append(Problem(field, f"{rel!r} resolves outside the project root"))
        elif not target.exists():
            problems.append(Problem(field, f"{rel!r} does not exist in the project ({root})"))
    return problems
