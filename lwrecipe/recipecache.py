"""Validated recipe documents remembered by the exact bytes of the recipe file.

Most of what a short command such as a no-op build spends on its recipes is
building pydantic's validators for the recipe models. A recipe whose bytes this
same recipe.py, under the same pydantic, has validated before is rebuilt from
the fields it validated to, without validation: the entry is named by the
sha256 of the file's bytes and of recipe.py's source and pydantic's version, so
any change to either misses. Only documents that validated are kept; checks
that look at the file system or across fields still run on every load
(recipe.load_recipe). A missing, unreadable or malformed entry only costs
validating again, and the directory can be deleted at any time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from . import recipe
from .hosttools import tool_cache_path
from .recipe import RecipeDoc
from .store import replace_text

_MODELS = {cls.__name__: cls for cls in (recipe.UrlSource, recipe.GitSource, recipe.PathSource,
                                          recipe.FilePatch, recipe.UrlPatch, recipe.SourcePatch)}
_code_tag: str | None = None
LIMIT = 20_000  # entries kept; the least recently written go first (each is about 1 KB)
SLACK = 0.1  # the directory may grow this far past LIMIT between two prunes
_counted: int | None = None  # entries as this process last counted them, plus those it wrote since


def cache_dir() -> Path:
    """Beside the host-tool memo: ~/.cache/lwrecipe/recipes (LWRECIPE_TOOL_CACHE moves both)."""
    return tool_cache_path().parent / "recipes"


def _entry(data: bytes) -> Path:
    global _code_tag
    if _code_tag is None:
        import pydantic

        code = Path(recipe.__file__).read_bytes() + pydantic.VERSION.encode()
        _code_tag = hashlib.sha256(code).hexdigest()
    return cache_dir() / (hashlib.sha256(_code_tag.encode() + b"\0" + data).hexdigest() + ".json")


def get(data: bytes) -> RecipeDoc | None:
    try:
        fields = json.loads(_entry(data).read_bytes())
        return _construct(fields)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def put(data: bytes, doc: RecipeDoc) -> None:
    global _counted
    path = _entry(data)
    try:
        replace_text(path, json.dumps(_fields(doc)))
        _counted = _counted + 1 if _counted is not None else sum(1 for _ in os.scandir(path.parent))
        if _counted > LIMIT * (1 + SLACK):
            _counted = _prune(path.parent)
    except OSError:
        pass  # a read-only home only costs speed


def _prune(directory: Path) -> int:
    """Keeps the newest LIMIT entries; returns how many are left. The directory is
    counted once per process and listed again only each LIMIT * SLACK writes, so
    validating a graph of many new recipes stays linear."""
    entries = list(os.scandir(directory))
    if len(entries) > LIMIT:
        entries.sort(key=lambda e: e.stat().st_mtime_ns)
        for entry in entries[:len(entries) - LIMIT]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
    return min(len(entries), LIMIT)


def _fields(doc: RecipeDoc) -> dict[str, Any]:
    return {"schema": doc.schema_, "package": doc.package.model_dump(), "build": doc.build.model_dump(),
            "sources": [[type(s).__name__, s.model_dump()] for s in doc.sources],
            "patches": [[type(p).__name__, p.model_dump()] for p in doc.patches]}


def _construct(fields: dict[str, Any]) -> RecipeDoc:
    """The document exactly as validation built it (the fields came from one)."""
    return RecipeDoc.model_construct(
        schema_=fields["schema"],
        package=recipe.Package.model_construct(**fields["package"]),
        sources=[_MODELS[kind].model_construct(**values) for kind, values in fields["sources"]],
        patches=[_MODELS[kind].model_construct(**values) for kind, values in fields["patches"]],
        build=recipe.Build.model_construct(**fields["build"]))
