"""Remote execution over REAPI: input roots uploaded, Execute, results.

A build sent to an executor (`build --executor grpc://host:port[/instance]`) is
one Action. Its input root's Merkle tree is made by merkle.py (`InputTree`);
only what the server's CAS lacks is uploaded (FindMissingBlobs first, batches
for small blobs, ByteStream for large ones).

`Executor.execute` sends the Action, follows its Operation to the end (again
with WaitExecution when the stream breaks) and returns the ExecuteResponse; it
can be cancelled from another thread, which cancels the operation on the server
(Operations.CancelOperation) as well as the call. `materialise` writes an output
directory back from its Tree, every blob checked against its digest.

grpc and the protos are imported with reapi.py, only when an executor is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.errors import IntegrityError, RemoteError
from .backends.reapi import BATCH, ReapiBackend
from .merkle import InputTree

FIND_MISSING = 5000  # digests per FindMissingBlobs request


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
                    where = source if isinstance(source, Path) else f"message {sha[:12]}"
                    raise IntegrityError(f"{where}: changed while it was being sent; run the build again")
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
        attempts = self.backend.policy.attempts + 1  # Execute, then WaitExecution after each break
        for attempt in range(1, attempts + 1):  # a broken stream is picked up again, as the policy waits
            if attempt > 1:
                self.backend.pause(attempt - 1)
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
        with contextlib.suppress(self.grpc.RpcError):  # already done, or the server is gone: nothing left to stop
            self.operations.CancelOperation(
                self.ops.CancelOperationRequest(name=name), metadata=self.backend.metadata, timeout=10
            )

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
