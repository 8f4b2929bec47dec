"""A REAPI server as a remote cache: `grpc://host:port[/instance]` or `grpcs://…`.

Blobs live in the server's ContentAddressableStorage under their sha256 and size
(FindMissingBlobs first; BatchUpdateBlobs / BatchReadBlobs for small blobs,
ByteStream Write / Read for large ones, both resumed from where they stopped).
Every other entry of lwrecipe's remote layout — a record (ac/<key>), a
co-signature (sig/<key>/<signer>), provenance (prov/<key>), the names index —
is stored in the ActionCache as the ActionResult of a real Action:

    Command  { arguments: ["lwrecipe", "<kind>", "<name>"], output_paths: ["<kind>.json"] }
    Action   { command_digest: the Command's, input_root_digest: the empty Directory's,
               salt: "lwrecipe:<kind>:<name>", do_not_cache: false }
    ActionResult { output_files: [{path: "<kind>.json", digest: the entry's bytes in CAS}, ...] }

so the action digest is a function of the lwrecipe key alone, and every builder
finds the same entry. A record's ActionResult also lists its output blob and log
as output files (`output.tar.zst`, `build.log.zst`), which is how their sizes are
known to read them. The Command and the empty Directory are uploaded to CAS too.
Signatures stay inside the record and in their own entries, as on any remote.

A call the server answers UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED or
DEADLINE_EXCEEDED is asked again, and a broken ByteStream resumed, after the
waits of the one retry policy (inputs/retry.py) HTTP remotes and downloads
follow; any other answer is final at once.

Every call has a gRPC deadline: the remote's `timeout`, or for a blob of known
size max(timeout, size / min_rate); a ByteStream stream is also cancelled by a
watchdog once it moves fewer than min_rate bytes a second over `timeout`
seconds, silence included (inputs/deadlines.py), whatever size the server claims.

grpc and the REAPI protos are loaded only when a grpc remote is used
(grpcsetup.py).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ...core.digests import Sha256
from ...core.errors import IntegrityError, RemoteError
from ...core.record import BuildRecord
from ...inputs.deadlines import Limits, Pace, Watchdog
from ...inputs.fetch import Reporter
from ...inputs.retry import Failure, GaveUp, RetryPolicy, retrying
from ...store.staging import PipelinedWriter
from ...store.store import Store
from ..config import RemoteSpec
from .base import Entry
from .grpcsetup import protos, system_roots

CHUNK = 1 << 20  # bytes per ByteStream message
BATCH = 1 << 20  # blobs up to this size go in one batch request
# Answers another attempt may not get (the server busy, restarting or slow), as
# Bazel's --remote_retries treats them; any other answer is final.
RETRIED = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED", "ABORTED", "DEADLINE_EXCEEDED"})


@dataclass
class ReapiBackend:
    spec: RemoteSpec
    token: str | None = None
    sizes: dict[str, int] = field(default_factory=dict)  # blob sha256 -> size, learned from results and uploads
    policy: RetryPolicy = field(default_factory=RetryPolicy)  # calls retried and streams resumed as it says
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        grpc, self.re, re_grpc, self.bs, bs_grpc = protos()
        parts = urlsplit(self.spec.url)
        self.instance = parts.path.strip("/")
        target = parts.netloc
        if parts.scheme == "grpcs":
            self.channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(system_roots()))
        else:
            self.channel = grpc.insecure_channel(target)
        self.grpc = grpc
        self.metadata = [("authorization", f"Bearer {self.token}")] if self.token else None
        self.cas = re_grpc.ContentAddressableStorageStub(self.channel)
        self.ac = re_grpc.ActionCacheStub(self.channel)
        self.bytestream = bs_grpc.ByteStreamStub(self.channel)
        self.limits = Limits(self.spec.timeout, self.spec.min_rate)
        self._base_uploaded = False

    # -- helpers ---------------------------------------------------------------------------------------------

    def deadline(self, size: int | None = None) -> float:
        """Seconds a call moving `size` bytes may take (the remote's timeout at least)."""
        return self.limits.deadline(size) or self.spec.timeout

    def stream(self, size: int | None, call: Any) -> Watchdog:
        """A watchdog that cancels a streaming call falling below the minimum rate. It
        sees bytes a message (CHUNK) at a time: its window is long enough for one."""
        rate = self.spec.min_rate
        window = max(self.spec.timeout, CHUNK / rate) if rate > 0 else self.spec.timeout
        return Watchdog(Pace(Limits(window, rate), size, idle_fails=True), call.cancel)

    def _call(self, what: str, method: Any, request: Any, size: int | None = None) -> Any:
        """method's answer to `request`, asked again as the policy says while the
        server answers what another attempt may not get; KeyError for NOT_FOUND."""

        def once() -> Any:
            try:
                return method(request, metadata=self.metadata, timeout=self.deadline(size))
            except self.grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                if code == self.grpc.StatusCode.NOT_FOUND:
                    raise KeyError(what) from None
                detail = exc.details() if hasattr(exc, "details") else str(exc)
                name = code.name if code else "error"
                raise Failure(f"{name}: {detail}", retry=name in RETRIED) from None

        try:
            return retrying(self.policy, once, self.sleep)
        except GaveUp as exc:
            raise RemoteError(f"{self.spec.name}: {what}: {exc.reason}") from None

    def pause(self, attempt: int) -> None:
        """The policy's wait after failed attempt number `attempt` of a stream."""
        self.sleep(self.policy.delay(attempt, None))

    def _digest(self, sha: str, size: int) -> Any:
        return self.re.Digest(hash=sha, size_bytes=size)

    def _of(self, data: bytes) -> Any:
        return self._digest(hashlib.sha256(data).hexdigest(), len(data))

    def _missing(self, digests: list[Any]) -> set[str]:
        request = self.re.FindMissingBlobsRequest(instance_name=self.instance, blob_digests=digests)
        reply = self._call("FindMissingBlobs", self.cas.FindMissingBlobs, request)
        return {d.hash for d in reply.missing_blob_digests}

    def _put_small(self, blobs: list[bytes]) -> None:
        """The blobs the server does not have yet, in one batch."""
        missing = self._missing([self._of(b) for b in blobs])
        self._batch_update([b for b in blobs if self._of(b).hash in missing])

    def _batch_update(self, blobs: list[bytes]) -> None:
        if not blobs:
            return
        request = self.re.BatchUpdateBlobsRequest(
            instance_name=self.instance,
            requests=[self.re.BatchUpdateBlobsRequest.Request(digest=self._of(b), data=b) for b in blobs],
        )
        reply = self._call("BatchUpdateBlobs", self.cas.BatchUpdateBlobs, request, sum(map(len, blobs)))
        self._check_batch(reply.responses, "BatchUpdateBlobs")

    def _check_batch(self, responses: Any, what: str) -> None:
        for response in responses:
            if response.status.code != 0:
                raise RemoteError(
                    f"{self.spec.name}: {what} {response.digest.hash[:12]}: "
                    f"status {response.status.code}: {response.status.message}"
                )

    def _get_small(self, digest: Any) -> bytes:
        return self._batch_read([digest])[digest.hash]

    def _batch_read(self, digests: list[Any]) -> dict[str, bytes]:
        """Blobs by one BatchReadBlobs, each checked against its sha256."""
        request = self.re.BatchReadBlobsRequest(instance_name=self.instance, digests=digests)
        reply = self._call("BatchReadBlobs", self.cas.BatchReadBlobs, request, sum(d.size_bytes for d in digests))
        self._check_batch(reply.responses, "BatchReadBlobs")
        found = {}
        for response in reply.responses:
            if hashlib.sha256(response.data).hexdigest() != response.digest.hash:
                raise IntegrityError(
                    f"{self.spec.name}: cas/{response.digest.hash[:12]}: served bytes with another sha256; refused"
                )
            found[response.digest.hash] = bytes(response.data)
        if any(d.hash not in found for d in digests):
            raise RemoteError(f"{self.spec.name}: BatchReadBlobs: the server left blobs out of its answer")
        return found

    def _action(self, kind: str, name: str) -> tuple[Any, list[bytes]]:
        """The Action digest for a layout entry, and the Command and empty Directory
        it names (to be in CAS)."""
        command = self.re.Command(arguments=["lwrecipe", kind, name], output_paths=[f"{kind}.json"])
        command_bytes = command.SerializeToString(deterministic=True)
        empty = self.re.Directory().SerializeToString(deterministic=True)
        action = self.re.Action(
            command_digest=self._of(command_bytes),
            input_root_digest=self._of(empty),
            do_not_cache=False,
            salt=f"lwrecipe:{kind}:{name}".encode(),
        )
        return self._of(action.SerializeToString(deterministic=True)), [
            command_bytes,
            empty,
            action.SerializeToString(deterministic=True),
        ]

    def _result(self, kind: str, name: str) -> Any | None:
        digest, _ = self._action(kind, name)
        request = self.re.GetActionResultRequest(instance_name=self.instance, action_digest=digest)
        try:
            result = self._call(f"GetActionResult {kind}/{name[:12]}", self.ac.GetActionResult, request)
        except KeyError:
            return None
        for output in result.output_files:
            self.sizes[output.digest.hash] = output.digest.size_bytes
        return result

    # -- the Backend protocol --------------------------------------------------------------------------------

    def exists(self, kind: str, name: str, size: int | None = None) -> bool:
        if kind == "cas":
            size = size if size is not None else self.sizes.get(name)
            if size is None:
                return False  # unknown: an upload follows, and uploads are idempotent
            self.sizes[name] = size
            return not self._missing([self._digest(name, size)])
        return self._result(kind, name) is not None

    def read_small(self, kind: str, name: str, limit: int) -> bytes | None:
        result = self._result(kind, name)
        if result is None:
            return None
        entry = next((o for o in result.output_files if o.path == f"{kind}.json"), None)
        if entry is None:
            raise IntegrityError(f"{self.spec.name}: {kind}/{name[:12]}: the action result has no {kind}.json; refused")
        if entry.digest.size_bytes > limit:
            raise IntegrityError(f"{self.spec.name}: {kind}/{name[:12]}: larger than {limit} bytes; refused")
        try:
            return self._get_small(entry.digest)
        except KeyError:
            return None

    def upload(self, kind: str, name: str, path: Path, reporter: Reporter) -> None:
        size = path.stat().st_size
        label = f"push {kind}/{name[:12]}"
        reporter.begin(label, name[:12], size)
        if kind == "cas":
            self._upload_blob(name, path, size, lambda n: reporter.advance(label, n))
        else:
            self._put_entry(kind, name, path.read_bytes())
            reporter.advance(label, size)
        reporter.end(label, True, self.spec.name)

    def _put_entry(self, kind: str, name: str, data: bytes) -> None:
        digest, base = self._action(kind, name)
        self._put_small([data, *base])
        outputs = [self.re.OutputFile(path=f"{kind}.json", digest=self._of(data))]
        if kind == "ac":  # the record's blobs, with their sizes: what a reader needs to fetch them
            record = BuildRecord.from_json(data, f"ac/{name[:12]}")
            outputs.append(
                self.re.OutputFile(path="output.tar.zst", digest=self._digest(record.blob.sha256, record.blob.size))
            )
            if record.log in self.sizes:
                outputs.append(
                    self.re.OutputFile(path="build.log.zst", digest=self._digest(record.log, self.sizes[record.log]))
                )
        request = self.re.UpdateActionResultRequest(
            instance_name=self.instance,
            action_digest=digest,
            action_result=self.re.ActionResult(output_files=outputs, exit_code=0),
        )
        self._call(f"UpdateActionResult {kind}/{name[:12]}", self.ac.UpdateActionResult, request)

    def _upload_blob(self, sha: str, path: Path, size: int, sent: Any) -> None:
        """Send the blob (its caller, push, asked FindMissingBlobs already)."""
        self.sizes[sha] = size
        if size <= BATCH:
            self._batch_update([path.read_bytes()])
            sent(size)
            return
        resource = f"{self.instance + '/' if self.instance else ''}uploads/{uuid.uuid4()}/blobs/{sha}/{size}"
        offset = 0
        for attempt in range(1, self.policy.attempts):  # resumed where the server says it stopped
            try:
                self._write(resource, path, offset, size, sent)
                return
            except self.grpc.RpcError:
                self.pause(attempt)
                status = self.bytestream.QueryWriteStatus(
                    self.bs.QueryWriteStatusRequest(resource_name=resource),
                    metadata=self.metadata,
                    timeout=self.spec.timeout,
                )
                if status.complete:
                    return
                offset = status.committed_size
        self._write(resource, path, offset, size, sent)

    def _write(self, resource: str, path: Path, offset: int, size: int, sent: Any) -> None:
        watched: list[Watchdog] = []  # the call's watchdog, once it runs

        def requests() -> Any:
            with path.open("rb") as src:
                src.seek(offset)
                position = offset
                while True:
                    piece = src.read(CHUNK)
                    last = position + len(piece) >= size
                    yield self.bs.WriteRequest(
                        resource_name=resource, write_offset=position, data=piece, finish_write=last
                    )
                    position += len(piece)
                    sent(len(piece))
                    for watch in watched:
                        watch.pace.moved(len(piece), "out")
                    if last:
                        return

        call = self.bytestream.Write.future(requests(), metadata=self.metadata, timeout=self.deadline(size - offset))
        with self.stream(size - offset, call) as watchdog:
            watched.append(watchdog)
            try:
                reply = call.result()
            except (self.grpc.FutureCancelledError, self.grpc.RpcError):
                if watchdog.reason is None:
                    raise
                raise RemoteError(
                    f"{self.spec.name}: cas/{resource.rsplit('/blobs/', 1)[-1][:12]}: {watchdog.reason}"
                ) from None
        if reply.committed_size != size:
            raise RemoteError(
                f"{self.spec.name}: ByteStream Write cas/{resource[-80:]}: committed "
                f"{reply.committed_size} of {size} bytes"
            )

    def download(
        self, store: Store, sha: Sha256, size: int | None, max_size: int, *, label: str, reporter: Reporter
    ) -> None:
        """Read a blob into the store's cas/, verified by its sha256 (resumed from the
        bytes already received when the stream breaks)."""
        size = size if size is not None else self.sizes.get(sha)
        if size is None:
            raise RemoteError(f"{self.spec.name}: cas/{sha[:12]}: its size is not known (no action result names it)")
        if size > max_size:
            raise IntegrityError(
                f"{self.spec.name}: cas/{sha[:12]}: {size} bytes, more than the expected {max_size}; refused"
            )
        resource = f"{self.instance + '/' if self.instance else ''}blobs/{sha}/{size}"
        with store.staging() as staged:
            for attempt in range(1, self.policy.attempts + 1):
                writer = PipelinedWriter(staged)
                try:
                    request = self.bs.ReadRequest(resource_name=resource, read_offset=staged.size)
                    call = self.bytestream.Read(
                        request, metadata=self.metadata, timeout=self.deadline(size - staged.size)
                    )
                    with self.stream(size - staged.size, call) as watch:
                        for reply in call:
                            if writer.total + len(reply.data) > size:
                                raise IntegrityError(
                                    f"{self.spec.name}: cas/{sha[:12]}: more than {size} bytes; refused"
                                )
                            writer.take(reply.data)
                            watch.pace.moved(len(reply.data))
                    writer.close()
                    break
                except self.grpc.RpcError as exc:
                    writer.close()
                    if watch.reason is not None:  # a drip is not luck: not tried again
                        raise RemoteError(f"{self.spec.name}: cas/{sha[:12]}: {watch.reason}") from None
                    if exc.code() == self.grpc.StatusCode.NOT_FOUND or attempt == self.policy.attempts:
                        raise RemoteError(
                            f"{self.spec.name}: cas/{sha[:12]}: {exc.code().name}: {exc.details()}"
                        ) from None
                    self.pause(attempt)
            if staged.size != size or staged.hexdigest() != sha:
                raise IntegrityError(f"{self.spec.name}: cas/{sha[:12]}: served bytes with another sha256; refused")
            store.commit(staged, "cas", sha)

    def listing(self, kind: str) -> list[Entry]:
        raise RemoteError(
            f"{self.spec.name}: a REAPI server collects its own storage (BuildGrid: `bgd cleanup`); "
            "cache gc --remote works on directories and WebDAV servers"
        )

    def delete(self, kind: str, name: str) -> None:
        self.listing(kind)

    def close(self) -> None:
        self.channel.close()
