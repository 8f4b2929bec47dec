"""Writing resolved Debian packages into a recipe file: its deb sources replaced by
a new closure, every other byte of the file (comments, order, layout) kept, and
the changed pins listed. The result is validated before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.documents import RECIPE_LIMIT, read_file, read_toml_text
from ..core.errors import RecipeError
from ..core.files import replace_text
from ..recipes.recipe import display_path, parse_recipe
from ..recipes.schema import DebianRequest, DebSource
from .debs import DebPin


@dataclass(frozen=True)
class PinChange:
    package: str
    old: str | None  # version, None when added
    new: str | None  # version, None when removed

    def text(self) -> str:
        if self.old is None:
            return f"+ {self.package} {self.new}"
        if self.new is None:
            return f"- {self.package} {self.old}"
        return f"~ {self.package} {self.old} -> {self.new}"


def request_of(path: Path) -> DebianRequest:
    """The [debian] table of a recipe: what `debs update` resolves again."""
    doc = parse_recipe(read_file(path, RECIPE_LIMIT, display_path(path)), display_path(path))
    if doc.debian is None:
        raise RecipeError.one(display_path(path), "debian", "no [debian] table: run `lwrecipe debs resolve` first")
    return doc.debian


def write_pins(path: Path, request: DebianRequest, pins: list[DebPin]) -> list[PinChange]:
    """Replace the recipe's deb sources with `pins` (after its other sources) and its
    [debian] table with `request`; returns what changed."""
    import tomlkit

    shown = display_path(path)
    text = read_toml_text(path, RECIPE_LIMIT, shown)  # bounded and depth-checked before tomlkit recurses
    doc = tomlkit.parse(text)
    old = {s.deb: s for s in parse_recipe(text.encode(), shown).sources if isinstance(s, DebSource)}
    tables = doc.get("sources")
    kept = [t for t in tables if "deb" not in t] if tables is not None else []
    sources = tomlkit.aot()
    for table in kept:
        sources.append(table)
    for pin in pins:
        entry = tomlkit.table()
        for key, value in (
            ("deb", pin.name),
            ("version", pin.version),
            ("arch", pin.arch),
            ("url", pin.url),
            ("sha256", pin.sha256),
        ):
            entry.add(key, value)
        previous = old.get(pin.name)
        if previous is not None and previous.mirrors and previous.sha256 == pin.sha256:
            entry.add("mirrors", list(previous.mirrors))
        sources.append(entry)
    debian = tomlkit.table()
    debian.add("packages", tomlkit.array().multiline(True) if len(request.packages) > 8 else tomlkit.array())
    debian["packages"].extend(request.packages)
    if request.arch:
        debian.add("arch", request.arch)
    if request.on:
        debian.add("on", request.on)
    doc["debian"] = debian  # replaced in place, or added at the end
    doc["sources"] = sources
    new_text = tomlkit.dumps(doc)
    parse_recipe(new_text.encode(), shown)  # never write a recipe that does not validate
    replace_text(path, new_text)
    new = {p.name: p for p in pins}
    return [
        PinChange(name, old[name].version if name in old else None, new[name].version if name in new else None)
        for name in sorted(set(old) | set(new))
        if name not in old or name not in new or old[name].sha256 != new[name].sha256
    ]
