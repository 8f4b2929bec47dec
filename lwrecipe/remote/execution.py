"""Remote execution over REAPI: input roots as Merkle trees, Execute, results.

A build sent to an executor (`build --executor grpc://host:port[/instance]`) is
one Action. Its input root is made here from directories on disk and small
synthetic ones (`InputTree`), every file and Directory message named by its
sha256 and size; only what the server's CAS lacks is uploaded (FindMissingBlobs
first, batches for small blobs, ByteStream for large ones). A tree that cannot
change (an environment unpacked once per store) is hashed once per process.

`Executor.execute` sends the Action, follows its Operation to the end (again
with WaitExecution when the stream breaks) and returns the ExecuteResponse; it
can be cancelled from another thread, which cancels the operation on the server
(Operations.CancelOperation) as well as the call. `materialise` writes an output
directory back from its Tree, every blob checked against its digest.

grpc and the protos are imported with reapi.py, only when an executor is used.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from ..core.errors import IntegrityError, RemoteError
from ..core.files import replace_text
from .backends.reapi import BATCH, ReapiBackend

Node = Union[Path, bytes, dict[str, "Node"]]
"""What an input tree is made of: a path on disk (directory, file or symlink), the
bytes of a file, or a synthetic directory of named nodes."""

FIND_MISSING = 5000  # digests per FindMissingBlobs request
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

        return DecodeError

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


class Cancelled(RemoteError):
    pass


class Executor:
    """An Execution service (and its CAS) as lwrecipe uses it."""

    def __init__(self, backend: ReapiBackend) -> None:
        from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as re_grpc
        from buildgrid._protos.google.longrunning import operations_pb2, operations_pb2_grpc

        self.backend, self.re, self.grpc = backend, backend.re, backend.grpc
        self.execution = re_grpc.ExecutionStub(backend.channel)
        self.operations = operations_pb2_grpc.OperationsStub(backend.channel)
        self.ops = operations_pb2
        self.name = backend.spec.name
        self._lock = threading.Lock()
        self._calls: dict[int, tuple[Any, str]] = {}  # thread id -> (the call, its operation's name)
        self.cancelled = threading.Event()

    # -- CAS -------------------------------------------------------------------------------------------------

    def upload(self, tree: InputTree) -> None:
        """Send every blob of `tree` the server lacks."""
        missing: list[str] = []
        items = [self.re.Digest(hash=sha, size_bytes=size) for sha, (size, _) in tree.blobs.items()]
        for start in range(0, len(items), FIND_MISSING):
            missing += sorted(self.backend._missing(items[start : start + FIND_MISSING]))
        batch: list[bytes] = []
        batch_size = 0
        for sha in missing:
            size, source = tree.blobs[sha]
            if size > BATCH:
                path = source if isinstance(source, Path) else None
                if path is None:
                    raise RemoteError(f"{self.name}: a message of {size} bytes is larger than a batch")
                self.backend._upload_blob(sha, path, size, lambda n: None)
            else:
                data = source if isinstance(source, bytes) else source.read_bytes()
                if hashlib.sha256(data).hexdigest() != sha:
                    raise IntegrityError(f"{source}: changed while it was being sent; run the build again")
                if batch_size + size > BATCH - 64 * 1024:
                    self.backend._batch_update(batch)
                    batch, batch_size = [], 0
                batch.append(data)
                batch_size += size
        self.backend._batch_update(batch)

    def read(self, digest: Any) -> bytes:
        """A blob's bytes, checked (small ones in a batch, others by ByteStream)."""
        if digest.size_bytes == 0:
            return b""
        if digest.size_bytes <= BATCH:
            try:
                return self.backend._get_small(digest)
            except KeyError:
                raise RemoteError(f"{self.name}: cas/{digest.hash[:12]}: not in the server's CAS") from None
        resource = (
            f"{self.backend.instance + '/' if self.backend.instance else ''}blobs/{digest.hash}/{digest.size_bytes}"
        )
        pieces = []
        received = 0
        call = self.backend.bytestream.Read(
            self.backend.bs.ReadRequest(resource_name=resource),
            metadata=self.backend.metadata,
            timeout=self.backend.deadline(digest.size_bytes),
        )
        try:
            with self.backend.stream(digest.size_bytes, call) as watch:
                for reply in call:
                    received += len(reply.data)
                    if received > digest.size_bytes:
                        call.cancel()
                        raise IntegrityError(
                            f"{self.name}: cas/{digest.hash[:12]}: more than {digest.size_bytes} bytes; refused"
                        )
                    pieces.append(reply.data)
                    watch.pace.moved(len(reply.data))
        except self.grpc.RpcError as exc:
            if watch.reason is not None:
                raise RemoteError(f"{self.name}: cas/{digest.hash[:12]}: {watch.reason}") from None
            raise RemoteError(f"{self.name}: cas/{digest.hash[:12]}: {exc.code().name}: {exc.details()}") from None
        data = b"".join(pieces)
        if hashlib.sha256(data).hexdigest() != digest.hash:
            raise IntegrityError(f"{self.name}: cas/{digest.hash[:12]}: served bytes with another sha256; refused")
        return data

    def _read_batches(self, digests: list[Any]) -> dict[str, bytes]:
        """Small blobs by BatchReadBlobs, as many per request as fit; each checked."""
        found: dict[str, bytes] = {}
        batch: list[Any] = []
        size = 0
        for digest in [*{d.hash: d for d in digests}.values(), None]:
            if batch and (digest is None or size + digest.size_bytes > BATCH - 64 * 1024):
                try:
                    found.update(self.backend._batch_read(batch))
                except KeyError:
                    raise RemoteError(f"{self.name}: BatchReadBlobs: NOT_FOUND") from None
                batch, size = [], 0
            if digest is not None:
                batch.append(digest)
                size += digest.size_bytes
        return found

    def materialise(self, tree_digest: Any, dest: Path) -> None:
        """Write the output directory a Tree describes into `dest` (created)."""
        message = self.re.Tree()
        message.ParseFromString(self.read(tree_digest))
        children = {hashlib.sha256(c.SerializeToString(deterministic=True)).hexdigest(): c for c in message.children}
        self._write_directory(message.root, children, dest, depth=0)

    def _write_directory(self, directory: Any, children: dict[str, Any], dest: Path, depth: int) -> None:
        if depth > 256:
            raise IntegrityError(f"{self.name}: an output tree nested deeper than 256 directories; refused")
        dest.mkdir()
        for node in directory.files:
            _check_name(node.name, self.name)
        small = [n.digest for n in directory.files if 0 < n.digest.size_bytes <= BATCH]
        got = self._read_batches(small)
        for node in directory.files:
            path = dest / node.name
            data = got[node.digest.hash] if node.digest.hash in got else self.read(node.digest)
            path.write_bytes(data)
            path.chmod(0o755 if node.is_executable else 0o644)
        for link in directory.symlinks:
            _check_name(link.name, self.name)
            os.symlink(link.target, dest / link.name)
        for sub in directory.directories:
            _check_name(sub.name, self.name)
            child = children.get(sub.digest.hash)
            if child is None:
                raise IntegrityError(f"{self.name}: the output tree names a directory it does not hold; refused")
            self._write_directory(child, children, dest / sub.name, depth + 1)

    # -- execution -------------------------------------------------------------------------------------------

    def execute(
        self, action_digest: Any, on_stage: Callable[[str], None] = lambda stage: None, fresh: bool = False
    ) -> Any:
        """Run the Action; the ExecuteResponse once its operation is done. `fresh`:
        really run it, never answer from the server's action cache."""
        request = self.re.ExecuteRequest(
            instance_name=self.backend.instance, action_digest=action_digest, skip_cache_lookup=fresh
        )
        name = ""
        for _ in range(5):  # a broken stream is picked up again with WaitExecution
            if self.cancelled.is_set():
                raise Cancelled(f"{self.name}: cancelled")
            if not name:
                call = self.execution.Execute(request, metadata=self.backend.metadata)
            else:
                call = self.execution.WaitExecution(
                    self.re.WaitExecutionRequest(name=name), metadata=self.backend.metadata
                )
            with self._lock:
                self._calls[threading.get_ident()] = (call, name)
            try:
                for operation in call:
                    name = operation.name
                    with self._lock:
                        self._calls[threading.get_ident()] = (call, name)
                    if self.cancelled.is_set():
                        self._cancel_operation(name)
                    metadata = self.re.ExecuteOperationMetadata()
                    if operation.metadata.Unpack(metadata):
                        on_stage(self.re.ExecutionStage.Value.Name(metadata.stage).lower())
                    if operation.done:
                        return self._response(operation)
            except self.grpc.RpcError as exc:
                if self.cancelled.is_set() or exc.code() == self.grpc.StatusCode.CANCELLED:
                    raise Cancelled(f"{self.name}: cancelled") from None
                if (
                    exc.code() not in (self.grpc.StatusCode.UNAVAILABLE, self.grpc.StatusCode.DEADLINE_EXCEEDED)
                    or not name
                ):
                    raise RemoteError(f"{self.name}: Execute: {exc.code().name}: {exc.details()}") from None
            finally:
                with self._lock:
                    self._calls.pop(threading.get_ident(), None)
        raise RemoteError(f"{self.name}: Execute: the operation's stream kept breaking")

    def _response(self, operation: Any) -> Any:
        if operation.HasField("error"):
            raise RemoteError(
                f"{self.name}: operation {operation.name}: status {operation.error.code}: {operation.error.message}"
            )
        response = self.re.ExecuteResponse()
        if not operation.response.Unpack(response):
            raise RemoteError(f"{self.name}: operation {operation.name}: no ExecuteResponse")
        if response.status.code != 0:
            raise RemoteError(
                f"{self.name}: operation {operation.name}: status {response.status.code}: {response.status.message}"
            )
        return response

    def _cancel_operation(self, name: str) -> None:
        if not name:
            return
        try:
            self.operations.CancelOperation(
                self.ops.CancelOperationRequest(name=name), metadata=self.backend.metadata, timeout=10
            )
        except self.grpc.RpcError:
            pass  # already done, or the server is gone: nothing left to stop

    def cancel_all(self) -> list[str]:
        """Cancel every operation in flight (Ctrl-C); returns their names."""
        self.cancelled.set()
        with self._lock:
            calls = list(self._calls.values())
        names = []
        for call, name in calls:
            self._cancel_operation(name)
            call.cancel()
            if name:
                names.append(name)
        return names


def _check_name(name: str, where: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise IntegrityError(f"{where}: the output tree holds the name {name!r}; refused")
