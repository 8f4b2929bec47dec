"""Validated documents remembered by the exact bytes of the file they came from.

Most of what a short command such as a no-op build spends on its recipes is
building pydantic's validators for the recipe models. A file whose bytes the
same validating code has accepted before is rebuilt from the fields it
validated to, without validation: an entry is named by the sha256 of the
file's bytes and of a tag for the code that made it (schema.py's and this
module's source, and pydantic's version), so any change to either misses. This
module stores, rebuilds and prunes the documents; recipe.py puts only documents
that validated. A `RecipeCache` is made by whoever loads recipes (the graph
loader) and counts its own writes. Each entry carries a MAC by a private per-user key, so
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
from dataclasses import dataclass, field
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
SLACK = 0.1  # the directory may grow this far past `limit` between two prunes


def code_tag() -> str:
    """What a cached document depends on besides the file: the source of the schema
    and of this module (which rebuilds documents), and pydantic's version."""
    import pydantic

    code = Path(schema.__file__).read_bytes() + Path(__file__).read_bytes() + pydantic.VERSION.encode()
    return hashlib.sha256(code).hexdigest()


@dataclass
class RecipeCache:
    """The entries in `directory`, authenticated by the key in `key_file`."""

    directory: Path
    key_file: Path
    limit: int = LIMIT
    slack: float = SLACK
    _tag: str | None = field(default=None, init=False, repr=False)
    _key: bytes | None = field(default=None, init=False, repr=False)  # b"" when the key cannot be used
    _counted: int | None = field(default=None, init=False, repr=False)  # entries counted, plus those written since

    @classmethod
    def for_user(cls) -> RecipeCache:
        """Beside the host-tool memo: ~/.cache/lwrecipe/recipes and recipes.key
        (LWRECIPE_TOOL_CACHE moves all three)."""
        base = user_cache_dir()
        return cls(base / "recipes", base / "recipes.key")

    def get(self, data: bytes) -> RecipeDoc | None:
        """The document these bytes validated to before, exactly as validation built it."""
        fields = self._read(data)
        if fields is None:
            return None
        try:
            return _construct(fields)
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, data: bytes, doc: RecipeDoc) -> None:
        """Remember the document these bytes validated to; only a validated one may be put."""
        path = self.entry(data)
        try:
            key = self._secret()
            if key is None:
                return
            body = json.dumps(document_fields(doc))
            replace_text(path, _mac(key, path.name, body.encode()) + "\n" + body)
            self._counted = self._counted + 1 if self._counted is not None else _count(self.directory)
            if self._counted > self.limit * (1 + self.slack):
                self._counted = self._prune()
        except OSError:
            pass  # a read-only home only costs speed

    def entry(self, data: bytes) -> Path:
        """Where the document of these bytes is kept."""
        if self._tag is None:
            self._tag = code_tag()
        return self.directory / (hashlib.sha256(self._tag.encode() + b"\0" + data).hexdigest() + ".json")

    def _read(self, data: bytes) -> Any:
        """The fields stored for these bytes, or None."""
        try:
            key = self._secret()
            path = self.entry(data)
            # Read like any file someone else may have put there: bounded, and a FIFO or
            # device is not waited on; only then is the MAC checked.
            mac, _, body = read_file(path, ENTRY_LIMIT).partition(b"\n") if key else (b"", b"", b"")
            if not key or not hmac.compare_digest(mac.decode("ascii", "replace"), _mac(key, path.name, body)):
                return None
            return json.loads(body)
        except (OSError, ValueError, DocumentError, RecursionError):
            return None

    def _secret(self) -> bytes | None:
        """This user's key for the entries (0600, made on first use), read once. An
        entry is believed only with a valid MAC by it, so whoever else can write the
        directory (a shared or world-writable cache) cannot plant a document that
        skips validation. None, and no caching, when the key is not private."""
        if self._key is None:
            self._key = _read_key(self.key_file)
        return self._key or None

    def _prune(self) -> int:
        """Keeps the newest `limit` entries; returns how many are left. The directory is
        counted once per cache and listed again only each `limit * slack` writes, so
        validating a graph of many new recipes stays linear."""
        entries = list(os.scandir(self.directory))
        if len(entries) > self.limit:
            entries.sort(key=lambda e: e.stat().st_mtime_ns)
            for entry in entries[: len(entries) - self.limit]:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
        return min(len(entries), self.limit)


def _read_key(path: Path) -> bytes:
    """The 32-byte key in `path`, made if missing; b"" unless only this user can read it."""
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
            return b""
        key = fh.read()
    return key if len(key) == 32 else b""


def _count(directory: Path) -> int:
    return sum(1 for _ in os.scandir(directory))


def _mac(key: bytes, name: str, body: bytes) -> str:
    return hmac.new(key, name.encode() + b"\0" + body, hashlib.sha256).hexdigest()


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
