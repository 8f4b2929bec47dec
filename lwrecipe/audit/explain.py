"""Naming what changed between two key documents, input by input (pure).

`diff_documents` compares what a build key covers — version, sources, patches,
script lines, env, host tools, platform, SOURCE_DATE_EPOCH and dependency
outputs — and returns one Change per differing input, worded as
`busybox: patches[0]: sha256 a1b2c3… → d4e5f6…` (a hash's kind is named once, before the old value). Walking down to a root cause
through dependencies is the caller's (it needs the store).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from ..core.digests import is_git_rev, is_sha256

MISSING = "(none)"


@dataclass(frozen=True)
class Change:
    recipe: str
    field: str  # "patches[0]", "host tool make", "script line 3", "env ARCH", "dependency musl", ...
    old: str
    new: str
    dependency: str | None = None  # set when the change is a dependency's output

    def text(self) -> str:
        return f"{self.recipe}: {self.field}: {self.old} → {self.new}"

    def document(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "input": self.field,
            "old": self.old,
            "new": self.new,
            "dependency": self.dependency,
        }


def _show(value: Any) -> str:
    if value is None or value == "":
        return MISSING
    text = str(value)
    if is_sha256(text) or is_git_rev(text):
        return text[:12] + "…"
    return text


def _hash_field(kind: str, value: Any) -> str:
    return MISSING if value in (None, "") else f"{kind} {_show(value)}"


def _items(name: str, label: str, old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[Change]:
    out = []
    for i in range(max(len(old), len(new))):
        a = old[i] if i < len(old) else None
        b = new[i] if i < len(new) else None
        where = f"{label}[{i}]"
        if a is None or b is None:
            out.append(Change(name, where, _describe(a), _describe(b)))
            continue
        for field in sorted(a.keys() | b.keys()):
            if a.get(field) != b.get(field):
                if field in ("sha256", "rev"):
                    out.append(Change(name, where, _hash_field(field, a.get(field)), _show(b.get(field))))
                else:
                    out.append(Change(name, f"{where}.{field}", _show(a.get(field)), _show(b.get(field))))
    return out


def _describe(item: dict[str, Any] | None) -> str:
    if item is None:
        return MISSING
    ident = item.get("sha256") or item.get("rev") or item.get("in_source") or ""
    return f"{item.get('kind', '?')} {_show(ident)}"


def _script(name: str, old: str, new: str) -> list[Change]:
    a, b = old.splitlines(), new.splitlines()
    out = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        where = f"script line {j1 + 1}" if j2 > j1 else f"script line {i1 + 1}"
        out.append(Change(name, where, " / ".join(a[i1:i2]) or MISSING, " / ".join(b[j1:j2]) or MISSING))
    return out


def _tool(old: dict[str, str] | None, new: dict[str, str] | None) -> tuple[str, str]:
    if old is None or new is None:
        return (
            _show(old and (old.get("version") or old.get("sha256"))) if old else MISSING,
            _show(new and (new.get("version") or new.get("sha256"))) if new else MISSING,
        )
    if old.get("version") != new.get("version"):
        return old.get("version") or MISSING, new.get("version") or MISSING
    return _hash_field("sha256", old.get("sha256")), _show(new.get("sha256"))


def diff_documents(name: str, old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Every keyed input that differs from `old` (the reference) to `new` (now)."""
    out: list[Change] = []
    for field in ("format", "name", "version", "platform", "source_date_epoch"):
        if old.get(field) != new.get(field):
            out.append(Change(name, field, _show(old.get(field)), _show(new.get(field))))
    out += _items(name, "sources", old.get("sources", []), new.get("sources", []))
    out += _items(name, "patches", old.get("patches", []), new.get("patches", []))
    if old.get("script") != new.get("script"):
        out += _script(name, old.get("script", ""), new.get("script", ""))
    old_env, new_env = old.get("env", {}), new.get("env", {})
    for key in sorted(old_env.keys() | new_env.keys()):
        if old_env.get(key) != new_env.get(key):
            out.append(Change(name, f"env {key}", _show(old_env.get(key)), _show(new_env.get(key))))
    old_tools, new_tools = old.get("host_tools", {}), new.get("host_tools", {})
    for tool in sorted(old_tools.keys() | new_tools.keys()):
        if old_tools.get(tool) != new_tools.get(tool):
            before, after = _tool(old_tools.get(tool), new_tools.get(tool))
            out.append(Change(name, f"host tool {tool}", before, after))
    old_deps, new_deps = old.get("deps", {}), new.get("deps", {})
    for dep in sorted(old_deps.keys() | new_deps.keys()):
        if old_deps.get(dep) != new_deps.get(dep) and old_deps.get(dep) and new_deps.get(dep) != "?":
            out.append(
                Change(
                    name,
                    f"dependency {dep}",
                    _hash_field("output", old_deps.get(dep)),
                    _show(new_deps.get(dep)) if new_deps.get(dep) else "not built",
                    dependency=dep,
                )
            )
    return out
