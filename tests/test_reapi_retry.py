"""A REAPI remote follows the one retry policy (inputs/retry.py) as an HTTP remote
does: a call the server answers UNAVAILABLE (or RESOURCE_EXHAUSTED, ABORTED, a
missed deadline) is asked again after the policy's wait, a broken ByteStream is
resumed after it, and an answer no retry changes is one error at once. The server
here is a real gRPC server on 127.0.0.1 speaking the REAPI protos, told which
answers to give."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as re_grpc
from buildgrid._protos.google.bytestream import bytestream_pb2 as bs_pb
from buildgrid._protos.google.bytestream import bytestream_pb2_grpc as bs_grpc
from buildgrid._protos.google.longrunning import operations_pb2
from google.protobuf import any_pb2

from lwrecipe.core.digests import Sha256
from lwrecipe.core.errors import RemoteError
from lwrecipe.inputs.fetch import NullReporter
from lwrecipe.inputs.retry import RetryPolicy
from lwrecipe.remote.backends.reapi import CHUNK, ReapiBackend
from lwrecipe.remote.config import RemoteSpec
from lwrecipe.remote.execution import Executor
from lwrecipe.store.store import Store

DATA = bytes(range(256)) * (3 * CHUNK // 256)  # three ByteStream messages
SHA = Sha256(hashlib.sha256(DATA).hexdigest())


class Told:
    """What the server answers: `fail` holds the codes of the next failing
    FindMissingBlobs calls, in order; `break_reads` how many Read streams end with
    UNAVAILABLE after their first message."""

    def __init__(self) -> None:
        self.fail: list[grpc.StatusCode] = []
        self.break_reads = 0
        self.calls: list[str] = []
        self.read_offsets: list[int] = []
        self.break_executions = 0
        self.waited_on: list[str] = []


class Cas(re_grpc.ContentAddressableStorageServicer):  # type: ignore[misc]
    def __init__(self, told: Told) -> None:
        self.told = told

    def FindMissingBlobs(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.told.calls.append("FindMissingBlobs")
        if self.told.fail:
            context.abort(self.told.fail.pop(0), "told to fail")
        return re_pb.FindMissingBlobsResponse()


class Bytes(bs_grpc.ByteStreamServicer):  # type: ignore[misc]
    def __init__(self, told: Told) -> None:
        self.told = told

    def Read(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self.told.read_offsets.append(request.read_offset)
        position = request.read_offset
        sent = 0
        while position < len(DATA):
            yield bs_pb.ReadResponse(data=DATA[position : position + CHUNK])
            position += CHUNK
            sent += 1
            if sent == 1 and self.told.break_reads:
                self.told.break_reads -= 1
                context.abort(grpc.StatusCode.UNAVAILABLE, "told to break the stream")


class Execution(re_grpc.ExecutionServicer):  # type: ignore[misc]
    """Execute answers one operation not yet done, then breaks (while told to);
    WaitExecution answers it done, with an ExecuteResponse."""

    def __init__(self, told: Told) -> None:
        self.told = told

    def Execute(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        yield operations_pb2.Operation(name="op-1", done=False)
        if self.told.break_executions:
            self.told.break_executions -= 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "told to break the stream")
        yield self.done()

    def WaitExecution(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self.told.waited_on.append(request.name)
        if self.told.break_executions:
            self.told.break_executions -= 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "told to break the stream")
        yield self.done()

    def done(self) -> Any:
        response = any_pb2.Any()
        response.Pack(re_pb.ExecuteResponse(result=re_pb.ActionResult(exit_code=0)))
        return operations_pb2.Operation(name="op-1", done=True, response=response)


@pytest.fixture
def server() -> Iterator[tuple[str, Told]]:
    told = Told()
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    re_grpc.add_ContentAddressableStorageServicer_to_server(Cas(told), grpc_server)
    bs_grpc.add_ByteStreamServicer_to_server(Bytes(told), grpc_server)
    re_grpc.add_ExecutionServicer_to_server(Execution(told), grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    try:
        yield f"grpc://127.0.0.1:{port}/main", told
    finally:
        grpc_server.stop(None)


def backend(url: str, waits: list[float], attempts: int = 4) -> ReapiBackend:
    return ReapiBackend(
        RemoteSpec(url=url, name="farm", timeout=10.0),
        policy=RetryPolicy(attempts=attempts, backoff=0.5),
        sleep=waits.append,
    )


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED]
)
def test_a_call_the_server_cannot_answer_now_is_asked_again_after_a_wait(
    server: tuple[str, Told], code: grpc.StatusCode
) -> None:
    url, told = server
    told.fail = [code, code]
    waits: list[float] = []
    assert backend(url, waits).exists("cas", SHA, len(DATA))
    assert told.calls == ["FindMissingBlobs"] * 3
    assert len(waits) == 2 and 0 < waits[0] <= waits[1]


def test_a_server_that_stays_unavailable_is_one_error_naming_the_attempts(server: tuple[str, Told]) -> None:
    url, told = server
    told.fail = [grpc.StatusCode.UNAVAILABLE] * 4
    waits: list[float] = []
    with pytest.raises(RemoteError, match=r"^farm: FindMissingBlobs: UNAVAILABLE: told to fail \(after 4 attempts\)$"):
        backend(url, waits).exists("cas", SHA, len(DATA))
    assert len(told.calls) == 4 and len(waits) == 3


def test_an_answer_no_retry_changes_is_one_error_at_once(server: tuple[str, Told]) -> None:
    url, told = server
    told.fail = [grpc.StatusCode.PERMISSION_DENIED]
    waits: list[float] = []
    with pytest.raises(RemoteError, match=r"^farm: FindMissingBlobs: PERMISSION_DENIED: told to fail$"):
        backend(url, waits).exists("cas", SHA, len(DATA))
    assert told.calls == ["FindMissingBlobs"] and waits == []


def test_a_broken_read_is_resumed_after_a_wait_from_what_arrived(server: tuple[str, Told], tmp_path: Path) -> None:
    url, told = server
    told.break_reads = 2
    waits: list[float] = []
    store = Store(tmp_path / "cache").ensure()
    backend(url, waits).download(store, SHA, len(DATA), len(DATA), label="pull", reporter=NullReporter())
    assert store.path("cas", SHA).read_bytes() == DATA
    assert told.read_offsets == [0, CHUNK, 2 * CHUNK]
    assert len(waits) == 2


def test_a_broken_execute_stream_is_picked_up_again_after_a_wait(server: tuple[str, Told]) -> None:
    url, told = server
    told.break_executions = 2
    waits: list[float] = []
    executor = Executor(backend(url, waits))
    response = executor.execute(re_pb.Digest(hash="ab" * 32, size_bytes=1))
    assert response.result.exit_code == 0
    assert told.waited_on == ["op-1", "op-1"] and len(waits) == 2
