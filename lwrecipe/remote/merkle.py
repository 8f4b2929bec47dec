"""The Merkle tree of a remote build's input root, as REAPI names it: every file
and Directory message by its sha256 and size, and where each blob's bytes are.

A root is made from directories on disk and small synthetic ones (`InputTree`);
a tree that cannot change (an environment unpacked once per store) is hashed
once per process, and its Merkle tree can be kept between runs. Executor
(execution.py) uploads what the server's CAS lacks.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from ..core.errors import RemoteError
from ..core.files import replace_text

Node: TypeAlias = Path | bytes | dict[str, "Node"]
"""What an input tree is made of: a path on disk (directory, file or symlink), the
bytes of a file, or a synthetic directory of named nodes."""

SAVED_FORMAT = b"lwrecipe-merkle-1\n"  # then a REAPI Tree: a frozen tree's Merkle tree kept between runs
HASH_THREADS = 4


@dataclass
class InputTree:
    """The Merkle tree of one input root, and where each of its blobs' bytes are.
    `frozen` (shared between the trees of one run) keeps the Directory and blobs of
    trees that never change, such as an environment unpacked once per store."""

    re: Any
    frozen: dict[Path, tuple[Any, dict[str, tuple[int, Path | bytes]]]] = field(default_factory=dict)
    blobs: dict[str, tuple[int, Path | bytes]] = field(default_factory=dict)  # sha256 -> (size, source)
    _hashed: dict[Path, tuple[str, int]] = field(default_factory=dict)  # file -> (sha256, size)

    def digest(self, data: bytes) -> Any:
        sha = hashlib.sha256(data).hexdigest()
        self.blobs.setdefault(sha, (len(data), data))
        return self.re.Digest(hash=sha, size_bytes=len(data))

    def root(
        self, node: dict[str, Node], base: Path | None = None, exclude: tuple[str, ...] = (), saved: Path | None = None
    ) -> Any:
        """The root Directory's digest: `node`, over the top-level entries of the
        frozen tree `base` but the names in `exclude` and those `node` gives.
        `saved`: where the frozen tree's Merkle tree is kept between runs."""
        self._hash_files(_regular_files(list(_paths(node))))
        directory = self.re.Directory()
        if base is not None:
            below, blobs = self._frozen(base, exclude, saved)
            self.blobs.update(blobs)
            for kind in ("files", "directories", "symlinks"):
                getattr(directory, kind).extend(e for e in getattr(below, kind) if e.name not in node)
        for name in node:
            self._entry(directory, name, node[name])
        for kind in ("files", "directories", "symlinks"):
            ordered = sorted(getattr(directory, kind), key=lambda e: e.name)
            del getattr(directory, kind)[:]
            getattr(directory, kind).extend(ordered)
        return self.digest(directory.SerializeToString(deterministic=True))

    def _frozen(
        self, base: Path, exclude: tuple[str, ...], saved: Path | None
    ) -> tuple[Any, dict[str, tuple[int, Path | bytes]]]:
        if base in self.frozen:
            return self.frozen[base]
        found = self._load(base, saved) if saved is not None else None
        if found is None:
            sub = InputTree(self.re)
            names = [n for n in sorted(os.listdir(base)) if n not in exclude]
            sub._hash_files(_regular_files([base / n for n in names]))
            directory = self.re.Directory()
            for name in names:
                sub._entry(directory, name, base / name)
            found = (directory, sub.blobs)
            if saved is not None:  # every Directory below it is among the blobs, as its bytes
                tree = self.re.Tree(
                    root=directory,
                    children=[self.re.Directory.FromString(b) for _, b in sub.blobs.values() if isinstance(b, bytes)],
                )
                replace_text(saved, SAVED_FORMAT + tree.SerializeToString(deterministic=True))
        self.frozen[base] = found
        return found

    def _load(self, base: Path, saved: Path) -> tuple[Any, dict[str, tuple[int, Path | bytes]]] | None:
        """The Merkle tree of `base` as an earlier run saved it (None if there is none
        or it cannot be read): the tree is the same bytes, so its digests are too."""
        try:
            data = saved.read_bytes()
            if not data.startswith(SAVED_FORMAT):
                return None
            tree = self.re.Tree.FromString(data[len(SAVED_FORMAT) :])
        except (OSError, ValueError, self._decode_error()):
            return None
        children = {}
        blobs: dict[str, tuple[int, Path | bytes]] = {}
        for child in tree.children:
            raw = child.SerializeToString(deterministic=True)
            sha = hashlib.sha256(raw).hexdigest()
            children[sha] = child
            blobs[sha] = (len(raw), raw)

        def walk(directory: Any, where: Path) -> bool:
            for node in directory.files:
                blobs.setdefault(node.digest.hash, (node.digest.size_bytes, where / node.name))
            for sub in directory.directories:
                if sub.digest.hash not in children or not walk(children[sub.digest.hash], where / sub.name):
                    return False
            return True

        return (tree.root, blobs) if walk(tree.root, base) else None

    def _decode_error(self) -> type[Exception]:
        from google.protobuf.message import DecodeError

        error: type[Exception] = DecodeError  # typed here: protobuf may come without type hints
        return error

    def _hash_files(self, paths: Iterator[Path]) -> None:
        """sha256 of every file given, on a few threads (hashlib lets go of the GIL)."""

        def one(path: Path) -> tuple[Path, str, int]:
            with path.open("rb") as fh:
                return path, hashlib.file_digest(fh, "sha256").hexdigest(), os.fstat(fh.fileno()).st_size

        with ThreadPoolExecutor(HASH_THREADS) as pool:
            for path, sha, size in pool.map(one, paths):
                self._hashed[path] = (sha, size)

    def _synthetic(self, node: dict[str, Node]) -> Any:
        directory = self.re.Directory()
        for name in sorted(node):
            self._entry(directory, name, node[name])
        return self.digest(directory.SerializeToString(deterministic=True))

    def _entry(self, directory: Any, name: str, node: Node) -> None:
        if isinstance(node, dict):
            directory.directories.add(name=name, digest=self._synthetic(node))
        elif isinstance(node, bytes):
            directory.files.add(name=name, digest=self.digest(node), is_executable=False)
        else:
            self._path_entry(directory, name, node)

    def _path_entry(self, directory: Any, name: str, path: Path) -> None:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            directory.symlinks.add(name=name, target=os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            sub = self.re.Directory()
            with os.scandir(path) as listing:
                names = sorted(item.name for item in listing)
            for child in names:
                self._path_entry(sub, child, path / child)
            directory.directories.add(name=name, digest=self.digest(sub.SerializeToString(deterministic=True)))
        elif stat.S_ISREG(st.st_mode):
            sha, size = self._hashed.get(path) or self._hash_one(path)
            self.blobs.setdefault(sha, (size, path))
            directory.files.add(
                name=name, digest=self.re.Digest(hash=sha, size_bytes=size), is_executable=bool(st.st_mode & 0o100)
            )
        else:
            raise RemoteError(f"{path}: a device node, fifo or socket cannot be sent to an executor")

    def _hash_one(self, path: Path) -> tuple[str, int]:
        with path.open("rb") as fh:
            found = hashlib.file_digest(fh, "sha256").hexdigest(), os.fstat(fh.fileno()).st_size
        self._hashed[path] = found
        return found


def _paths(node: dict[str, Node]) -> Iterator[Path]:
    for child in node.values():
        if isinstance(child, dict):
            yield from _paths(child)
        elif isinstance(child, Path):
            yield child


def _regular_files(roots: list[Path]) -> Iterator[Path]:
    for root in roots:
        if not root.is_dir() or root.is_symlink():
            if root.is_file() and not root.is_symlink():
                yield root
            continue
        for top, _dirs, files in os.walk(root):
            for name in files:
                path = Path(top) / name
                if stat.S_ISREG(os.lstat(path).st_mode):
                    yield path
