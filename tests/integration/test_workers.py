"""Remote workers (pull and push): failure detection by heartbeat, the lost-worker
signal from outside, adoption after a dispatcher restart, and a dispatcher that
shrugs off malformed or forged messages."""

from __future__ import annotations

import os
import pickle
import signal
import time
import uuid
from pathlib import Path

import httpx
import msgpack
import pytest
import userfuncs
import zmq

from common import wire
from common.models import DispatchMode
from tests.conftest import (
    deserialize,
    execute,
    make_platform,
    register,
    running_on,
    task_running,
    wait_all,
    wait_result,
)

REMOTE = [DispatchMode.PULL, DispatchMode.PUSH]


def start(tmp: Path, mode: DispatchMode, **env: str):  # type: ignore[no-untyped-def]
    return make_platform(tmp, mode, workers=2, slots=1, env=env)


@pytest.mark.parametrize("mode", REMOTE, ids=lambda m: f"{m.value}-mode")
def test_a_silent_worker_is_declared_dead_and_its_task_runs_elsewhere(
    tmp_path: Path, mode: DispatchMode
) -> None:
    # Given a task running on one of two workers
    with task_running(tmp_path, mode, 2) as (platform, http, first):
        task_id = first["task_id"]
        frozen = platform.worker_ids[first["worker_id"]]
        # When that worker falls silent (SIGSTOP: no heartbeats, socket still open)
        stopped_ms = time.time() * 1000
        frozen.signal(signal.SIGSTOP)
        try:
            # Then the task is re-queued after the liveness timeout and completes elsewhere
            result = wait_result(http, task_id, timeout_s=30)
            view = http.get(f"/v1/tasks/{task_id}").json()
            assert result["status"] == "COMPLETED"
            assert view["attempt"] == 2
            assert view["worker_id"] != first["worker_id"]
            recovery_s = (view["started_at_ms"] - stopped_ms) / 1000
            print(f"recovery after a silent worker: {recovery_s:.2f} s")
            assert recovery_s < 1.0 + 1.5  # liveness timeout (1 s in tests) + checks + slack
        finally:
            frozen.signal(signal.SIGCONT)
        # And the worker that woke up rejoins by itself and serves again. It needs a
        # liveness timeout to notice and register again: pairs of naps are sent until
        # both workers have run one (bounded), instead of assuming it already has.
        nap = register(http, userfuncs.nap)
        served: set[str] = set()
        deadline = time.monotonic() + 30
        while served != set(platform.worker_ids) and time.monotonic() < deadline:
            views = wait_all(http, [execute(http, nap, 0.5) for _ in range(2)], timeout_s=30)
            served |= {v["worker_id"] for v in views.values()}
        assert served == set(platform.worker_ids)


@pytest.mark.parametrize("mode", REMOTE, ids=lambda m: f"{m.value}-mode")
def test_a_worker_reported_lost_has_its_tasks_requeued_at_once(
    tmp_path: Path, mode: DispatchMode
) -> None:
    # A long liveness timeout: only the report can explain a fast recovery.
    with task_running(tmp_path, mode, 2, FAAS_LIVENESS_TIMEOUT_S="20") as (platform, http, first):
        task_id = first["task_id"]
        frozen = platform.worker_ids[first["worker_id"]]
        frozen.signal(signal.SIGSTOP)
        try:
            reported_ms = time.time() * 1000
            platform.report_lost_worker(first["worker_id"])
            result = wait_result(http, task_id, timeout_s=15)
            view = http.get(f"/v1/tasks/{task_id}").json()
            assert result["status"] == "COMPLETED" and view["attempt"] == 2
            reaction_s = (view["started_at_ms"] - reported_ms) / 1000
            print(f"re-queued {reaction_s:.3f} s after the report")
            assert reaction_s < 1.0
        finally:
            frozen.signal(signal.SIGCONT)


@pytest.mark.parametrize("mode", REMOTE, ids=lambda m: f"{m.value}-mode")
def test_a_task_running_through_a_dispatcher_restart_is_adopted_not_rerun(
    tmp_path: Path, mode: DispatchMode
) -> None:
    with task_running(tmp_path, mode, 3) as (platform, http, first):
        task_id = first["task_id"]
        assert platform.dispatcher is not None
        platform.dispatcher.kill()
        platform.start_dispatcher()
        result = wait_result(http, task_id, timeout_s=30)
        view = http.get(f"/v1/tasks/{task_id}").json()
        assert result["status"] == "COMPLETED"
        assert view["attempt"] == 1, "the worker reported it on rejoining; it was not run again"


class RogueWorker:
    """A hand-driven DEALER speaking (or mangling) the protocol."""

    def __init__(self, port: int, identity: bytes) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.IDENTITY, identity)
        self.socket.connect(f"tcp://127.0.0.1:{port}")

    def send(self, *frames: bytes) -> None:
        self.socket.send_multipart(list(frames))

    def expect(self, command: wire.Command, timeout_s: float) -> wire.Message:
        """The next message of this command (others are skipped); AssertionError if none
        comes within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if self.socket.poll(left * 1000):
                message = wire.unpack(self.socket.recv_multipart())
                if message.command == command:
                    return message
        raise AssertionError(f"no {command.name} within {timeout_s} s")

    def close(self) -> None:
        self.socket.close(0)
        self.context.term()


@pytest.mark.parametrize("mode", REMOTE, ids=lambda m: f"{m.value}-mode")
def test_garbage_duplicates_and_forged_results_change_nothing(
    tmp_path: Path, mode: DispatchMode
) -> None:
    # Given a real task running on a real worker
    with task_running(tmp_path, mode, 1) as (platform, http, view):
        task_id = view["task_id"]
        rogue = RogueWorker(platform.dispatcher_port, b"rogue")
        try:
            hello = msgpack.packb({"worker_id": "rogue", "slots": 1, "running": [[task_id, 1]]})
            # When a peer sends junk, unknown commands, bad headers, double HELLOs,
            # and a forged result for the running task
            for frames in (
                [b"junk"],
                [b"GET / HTTP/1.1\r\n\r\n"],
                [wire.PROTOCOL, b"\x99", msgpack.packb({})],
                [wire.PROTOCOL, wire.Command.HELLO.value, b"\xc1\xc1"],
                [wire.PROTOCOL, wire.Command.HELLO.value, msgpack.packb({"slots": "many"})],
                [wire.PROTOCOL, wire.Command.HELLO.value, msgpack.packb({"slots": 0})],
                [
                    wire.PROTOCOL,
                    wire.Command.HELLO.value,
                    msgpack.packb({"worker_id": "rogue", "slots": float("inf")}),
                ],
                [
                    wire.PROTOCOL,
                    wire.Command.HELLO.value,
                    msgpack.packb(
                        {"worker_id": "rogue", "slots": 1, "running": [[task_id, 2**64 - 1]]}
                    ),
                ],
                [wire.PROTOCOL, wire.Command.READY.value, msgpack.packb({"credits": -5})],
                [wire.PROTOCOL, wire.Command.HELLO.value, hello],
                [wire.PROTOCOL, wire.Command.HELLO.value, hello],
                [
                    *wire.pack(
                        wire.Command.RESULT,
                        {"task_id": task_id, "attempt": 1, "outcome": "ok", "error": "", "seq": 1},
                    ),
                    pickle.dumps("forged"),
                ],
                [
                    *wire.pack(
                        wire.Command.RESULT,
                        {"task_id": str(uuid.uuid4()), "attempt": 1, "outcome": "ok", "seq": 2},
                    ),
                    b"",
                ],
                [*wire.pack(wire.Command.RESULT, {"task_id": task_id}), b""],
            ):
                rogue.send(*frames)
        finally:
            rogue.close()
        # Then the real result is the one committed, and the platform still works
        result = wait_result(http, task_id)
        assert deserialize(result["result"]) == 1
        assert http.get(f"/v1/tasks/{task_id}").json()["worker_id"] == view["worker_id"]
        assert platform.dispatcher is not None and platform.dispatcher.alive()
        fresh = wait_result(http, execute(http, register(http, userfuncs.double), 21))
        assert deserialize(fresh["result"]) == 42


def test_workers_start_from_the_command_line_with_env_settings(tmp_path: Path) -> None:
    # `python -m worker --help` documents the options; a bad mode is refused clearly.
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "worker", "--mode", "sideways"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "invalid choice" in done.stderr
    env = {**os.environ, "FAAS_SLOTS": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "worker", "tcp://127.0.0.1:1"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode != 0 and "slots" in done.stderr


def _health(port: int, path: str) -> int:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code
    except httpx.HTTPError:
        return 0


def _eventually(predicate, timeout_s: float = 15) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_health_endpoints_tell_live_from_ready(tmp_path: Path) -> None:
    import sys

    from faas.platform import Process, free_port

    with start(tmp_path, DispatchMode.PULL) as platform:
        worker_port, standby_port = free_port(), free_port()
        env = {**platform._env(None, platform._worker_keys), "FAAS_HEALTH_PORT": str(worker_port)}
        endpoint = f"tcp://127.0.0.1:{platform.dispatcher_port}"
        worker = Process(
            "probed-worker",
            [sys.executable, "-m", "worker", "--id", "probed", endpoint],
            env,
            tmp_path,
        ).start()
        env = {
            **platform._env("dispatcher", platform._dispatcher_keys),
            "FAAS_HEALTH_PORT": str(standby_port),
            "FAAS_BIND_HOST": "127.0.0.1",
        }
        argv = [sys.executable, "-m", "dispatcher", "-m", "pull", "-p", str(free_port())]
        standby = Process("standby", argv, env, tmp_path).start()
        try:
            # A connected worker is live and ready
            assert _eventually(lambda: _health(worker_port, "/readyz") == 200)
            assert _health(worker_port, "/healthz") == 200
            assert _health(worker_port, "/nope") == 404
            # A standby dispatcher (no lease) is live but not ready
            assert _eventually(lambda: _health(standby_port, "/healthz") == 200)
            assert _health(standby_port, "/readyz") == 503
        finally:
            worker.stop()
            standby.stop()


@pytest.mark.parametrize("mode", REMOTE, ids=lambda m: f"{m.value}-mode")
def test_sigterm_drains_running_tasks_and_hands_back_what_cannot_finish(
    tmp_path: Path, mode: DispatchMode
) -> None:
    """What a scale-down does to a worker pod: nothing is stranded or lost."""
    with (
        start(tmp_path, mode, FAAS_DRAIN_TIMEOUT_S="2", FAAS_LIVENESS_TIMEOUT_S="20") as platform,
        httpx.Client(base_url=platform.url, timeout=60) as http,
    ):
        nap = register(http, userfuncs.nap)
        # A short task on a worker that is told to stop: it finishes there
        short = execute(http, nap, 1)
        worker = platform.worker_ids[running_on(http, short)["worker_id"]]
        assert worker.popen is not None
        os.kill(worker.popen.pid, signal.SIGTERM)  # as Kubernetes does: PID 1 only
        view = wait_result(http, short, timeout_s=15)
        details = http.get(f"/v1/tasks/{short}").json()
        assert view["status"] == "COMPLETED" and details["attempt"] == 1
        assert worker.popen is not None and worker.popen.wait(timeout=10) == 0
        # A long task on the other worker, stopped: handed back at the drain timeout
        # (not after the 20 s liveness timeout) and run again by a new worker
        long = execute(http, nap, 5)
        other_id = running_on(http, long)["worker_id"]
        other = platform.worker_ids[other_id]
        platform.start_worker()
        stopped = time.monotonic()
        assert other.popen is not None
        os.kill(other.popen.pid, signal.SIGTERM)
        view = wait_result(http, long, timeout_s=30)
        details = http.get(f"/v1/tasks/{long}").json()
        assert view["status"] == "COMPLETED" and details["attempt"] == 2
        assert (
            details["worker_id"] != running_on.__name__ and time.monotonic() - stopped < 2 + 5 + 5
        )


@pytest.mark.parametrize("mode", REMOTE, ids=lambda m: f"{m.value}-mode")
def test_a_draining_worker_is_sent_no_new_work(tmp_path: Path, mode: DispatchMode) -> None:
    env = {"FAAS_DRAIN_TIMEOUT_S": "5", "FAAS_LIVENESS_TIMEOUT_S": "20"}
    with (
        make_platform(tmp_path, mode, workers=1, slots=2, env=env) as platform,
        httpx.Client(base_url=platform.url, timeout=60) as http,
    ):
        # Given the only worker, busy in one of its two slots, told to stop
        nap = register(http, userfuncs.nap)
        long = execute(http, nap, 3)
        draining_id = running_on(http, long)["worker_id"]
        worker = platform.worker_ids[draining_id]
        assert worker.popen is not None
        os.kill(worker.popen.pid, signal.SIGTERM)
        log = tmp_path / "logs" / "dispatcher.log"
        assert _eventually(lambda: f"worker {draining_id} drains" in log.read_text())
        # When new work arrives while it drains (its free slot would otherwise take it)
        short = execute(http, nap, 0.1)
        platform.start_worker()
        # Then the new work runs on another worker, and the long task still finishes
        assert wait_result(http, short, timeout_s=30)["status"] == "COMPLETED"
        assert http.get(f"/v1/tasks/{short}").json()["worker_id"] != draining_id
        assert wait_result(http, long, timeout_s=30)["status"] == "COMPLETED"
        assert http.get(f"/v1/tasks/{long}").json()["attempt"] == 1


def test_a_large_result_is_acknowledged_as_soon_as_it_commits(tmp_path: Path) -> None:
    """A worker keeps each result until told it is committed; small ones are told on
    heartbeats, but a worker holding large ones would hold megabytes until then."""
    slow_beats = {"FAAS_HEARTBEAT_INTERVAL_S": "3", "FAAS_LEASE_TTL_S": "15",
                  "FAAS_LIVENESS_TIMEOUT_S": "30"}  # fmt: skip
    with (
        make_platform(
            tmp_path, DispatchMode.PULL, workers=0, secure=False, env=slow_beats
        ) as platform,
        httpx.Client(base_url=platform.url, timeout=30) as http,
    ):
        worker = RogueWorker(platform.dispatcher_port, b"hand-driven")
        try:
            worker.send(*wire.pack(wire.Command.HELLO, {"worker_id": "hand", "slots": 1}))
            worker.expect(wire.Command.WELCOME, 10)
            worker.send(*wire.pack(wire.Command.READY, {"credits": 1}))
            execute(http, register(http, userfuncs.double), 21)
            task = worker.expect(wire.Command.TASK, 10).header
            worker.expect(wire.Command.HEARTBEAT, 10)  # the next one is 3 s away
            # When the worker reports a 2 MB result
            result = {"task_id": task["task_id"], "attempt": task["attempt"], "outcome": "ok",
                      "seq": 1}  # fmt: skip
            worker.send(*wire.pack(wire.Command.RESULT, result), pickle.dumps(bytes(2 << 20)))
            # Then it is told the result is committed within a second, not at the beat
            told = worker.expect(wire.Command.HEARTBEAT, 1.0)
            assert told.header.get("acked") == 1
        finally:
            worker.close()


@pytest.mark.parametrize("batches", [True, False], ids=["batching-worker", "older-worker"])
def test_a_turns_tasks_and_results_travel_in_one_batch_to_a_worker_that_takes_them(
    tmp_path: Path, batches: bool
) -> None:
    """A BATCH saves a send and a wake-up per task on both sides; a worker that did
    not say it takes them (an older one) still gets one TASK per message."""
    with (
        make_platform(tmp_path, DispatchMode.PULL, workers=0, secure=False) as platform,
        httpx.Client(base_url=platform.url, timeout=30) as http,
    ):
        worker = RogueWorker(platform.dispatcher_port, b"hand-driven")
        try:
            hello = {"worker_id": "hand", "slots": 4, **({"batches": True} if batches else {})}
            worker.send(*wire.pack(wire.Command.HELLO, hello))
            assert worker.expect(wire.Command.WELCOME, 10).header["batches"] is True
            # Given four tasks queued before the worker has credits for them
            function_id = register(http, userfuncs.double)
            task_ids = [execute(http, function_id, n) for n in range(4)]
            # When it asks for four
            worker.send(*wire.pack(wire.Command.READY, {"credits": 4}))
            # Then they come in one message, or one each to the older worker
            if batches:
                tasks = [part.header for part in worker.expect(wire.Command.BATCH, 10).parts]
            else:
                tasks = [worker.expect(wire.Command.TASK, 10).header for _ in range(4)]
            assert sorted(t["task_id"] for t in tasks) == sorted(task_ids)
            # And results reported in one BATCH all commit, each to its own task
            results = []
            for seq, t in enumerate(tasks, start=1):
                header = {"task_id": t["task_id"], "attempt": t["attempt"], "outcome": "ok",
                          "seq": seq}  # fmt: skip
                results.append((header, [pickle.dumps(t["task_id"])]))
            worker.send(*wire.pack_batch(wire.Command.RESULT, results))
            for task_id in task_ids:
                view = wait_result(http, task_id)
                assert view["status"] == "COMPLETED"
                assert deserialize(view["result"]) == task_id
        finally:
            worker.close()
