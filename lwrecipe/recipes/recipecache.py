"""Validated documents remembered by the exact bytes of the file they came from.

Most of what a short command such as a no-op build spends on its recipes is
building pydantic's validators for the recipe models. A file whose bytes the
same validating code has accepted before is rebuilt from the fields it
validated to, without validation: an entry is named by the sha256 of the
file's bytes and of a tag for the code that made it (schema.py's and this
module's source, and pydantic's version), so any change to either misses. This
module stores, rebuilds and prunes the documents; recipe.py puts only documents
that validated. Each entry carries a MAC by a private per-user key, so
an entry someone else wrote or changed is not believed. A missing, unreadable,
malformed or unauthenticated entry only costs validating again, and the
directory can be deleted at any time.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

from ..core.documents import RECIPE_LIMIT, read_file
from ..core.errors import DocumentError
from ..core.files import replace_text, user_cache_dir
from . import schema
from .schema import (
    Build,
    DebianRequest,
    DebSource,
    FilePatch,
    GitSource,
    Package,
    PathSource,
    RecipeDoc,
    SourcePatch,
    UrlPatch,
    UrlSource,
)

LIMIT = 20_000  # entries kept; the least recently written go first (each is about 1 KB)
ENTRY_LIMIT = 4 * RECIPE_LIMIT  # an entry is a validated recipe's fields: never larger than a few recipes
SLACK = 0.1  # the directory may grow this far past LIMIT between two prunes
_counted: int | None = None  # entries as this process last counted them, plus those it wrote since


def cache_dir() -> Path:
    """Beside the host-tool memo: ~/.cache/lwrecipe/recipes (LWRECIPE_TOOL_CACHE moves both)."""
    return user_cache_dir() / "recipes"


def _entry(data: bytes, tag: str) -> Path:
    return cache_dir() / (hashlib.sha256(tag.encode() + b"\0" + data).hexdigest() + ".json")


_keys: dict[Path, bytes] = {}  # per key file, read once per process


def _secret() -> bytes | None:
    """This user's key for the entries (user cache/recipes.key, 0600, made on first
    use). An entry is believed only with a valid MAC by it, so whoever else can
    write the directory (a shared or world-writable cache) cannot plant a document
    that skips validation. None, and no caching, when the key is not private."""
    path = user_cache_dir() / "recipes.key"
    if path not in _keys:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                os.write(fd, os.urandom(32))
                os.close(fd)
            except FileExistsError:
                pass  # another process made it meanwhile
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if st.st_uid != os.getuid() or st.st_mode & 0o077:
                return None
            key = fh.read()
        _keys[path] = key if len(key) == 32 else b""
    return _keys[path] or None


def _mac(key: bytes, name: str, body: bytes) -> str:
    return hmac.new(key, name.encode() + b"\0" + body, hashlib.sha256).hexdigest()


_code_tag: str | None = None


def code_tag() -> str:
    """What a cached document depends on besides the file: the source of the schema
    and of this module (which rebuilds documents), and pydantic's version."""
    global _code_tag
    if _code_tag is None:
        import pydantic

        code = Path(schema.__file__).read_bytes() + Path(__file__).read_bytes() + pydantic.VERSION.encode()
        _code_tag = hashlib.sha256(code).hexdigest()
    return _code_tag


def get(data: bytes) -> RecipeDoc | None:
    """The document these bytes validated to before, exactly as validation built it."""
    fields = _read(data, code_tag())
    if fields is None:
        return None
    try:
        return _construct(fields)
    except (KeyError, TypeError, ValueError):
        return None


def document_fields(doc: RecipeDoc) -> dict[str, Any]:
    """What an entry stores: every field, and the model of each source and patch."""
    return {
        "schema": doc.schema_,
        "package": doc.package.model_dump(),
        "build": doc.build.model_dump(),
        "sources": [[type(s).__name__, s.model_dump()] for s in doc.sources],
        "patches": [[type(p).__name__, p.model_dump()] for p in doc.patches],
        "debian": doc.debian.model_dump() if doc.debian else None,
    }


def _construct(fields: Any) -> RecipeDoc:
    models = {
        cls.__name__: cls for cls in (UrlSource, GitSource, PathSource, DebSource, FilePatch, UrlPatch, SourcePatch)
    }
    return RecipeDoc.model_construct(
        schema_=fields["schema"],
        package=Package.model_construct(**fields["package"]),
        sources=[models[kind].model_construct(**values) for kind, values in fields["sources"]],
        patches=[models[kind].model_construct(**values) for kind, values in fields["patches"]],
        build=Build.model_construct(**fields["build"]),
        debian=DebianRequest.model_construct(**fields["debian"]) if fields["debian"] else None,
    )


def put(data: bytes, doc: RecipeDoc) -> None:
    """Remember the document these bytes validated to; only a validated one may be put."""
    _write(data, code_tag(), document_fields(doc))


def _read(data: bytes, tag: str) -> Any:
    """The fields stored for these bytes under this code tag, or None."""
    try:
        key = _secret()
        path = _entry(data, tag)
        # Read like any file someone else may have put there: bounded, and a FIFO or
        # device is not waited on; only then is the MAC checked.
        mac, _, body = read_file(path, ENTRY_LIMIT).partition(b"\n") if key else (b"", b"", b"")
        if not key or not hmac.compare_digest(mac.decode("ascii", "replace"), _mac(key, path.name, body)):
            return None
        return json.loads(body)
    except (OSError, ValueError, DocumentError, RecursionError):
        return None


def _write(data: bytes, tag: str, fields: Any) -> None:
    global _counted
    path = _entry(data, tag)
    try:
        key = _secret()
        if key is None:
            return
        body = json.dumps(fields)
        replace_text(path, _mac(key, path.name, body.encode()) + "\n" + body)
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
        for entry in entries[: len(entries) - LIMIT]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
    return min(len(entries), LIMIT)
