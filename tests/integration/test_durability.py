"""No accepted task is lost: many concurrent tasks, crashing slots, and a
dispatcher killed with SIGKILL mid-run. Each test runs its own platform."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import userfuncs

from common.models import DispatchMode
from tests.conftest import (
    MODES,
    deserialize,
    execute,
    make_platform,
    register,
    running_on,
    serialize,
    wait_all,
    wait_result,
)


@pytest.fixture(params=MODES, ids=lambda m: f"{m.value}-mode")
def fresh(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    with (
        make_platform(tmp_path, request.param) as running,
        httpx.Client(base_url=running.url, timeout=60) as http,
    ):
        yield running, http, tmp_path


def executions(path: Path) -> Counter[int]:
    return Counter(int(line) for line in path.read_text().split()) if path.exists() else Counter()


def test_a_thousand_concurrent_tasks_end_once_each(fresh) -> None:  # type: ignore[no-untyped-def]
    # Given 1,000 tasks submitted concurrently, one HTTP request each
    _, http, tmp = fresh
    log = tmp / "executions.log"
    function_id = register(http, userfuncs.record)

    def submit(i: int) -> str:
        body = {"function_id": function_id, "payload": serialize(((str(log), i), {}))}
        response = http.post("/execute_function", json=body)
        assert response.status_code == 201
        return response.json()["task_id"]

    with ThreadPoolExecutor(16) as pool:
        task_ids = list(pool.map(submit, range(1000)))
    # Then every task completes with its own value, and each ran exactly once
    views = wait_all(http, task_ids, timeout_s=120)
    assert len(set(task_ids)) == 1000
    assert [deserialize(views[t]["result"]) for t in task_ids] == list(range(1000))
    assert executions(log) == Counter(range(1000))


def test_a_slot_that_dies_costs_one_slot_and_the_task_fails_after_max_attempts(fresh) -> None:  # type: ignore[no-untyped-def]
    _, http, _ = fresh
    for fn, args in ((userfuncs.die, (3,)), (userfuncs.segfault, ())):
        body = {
            "function_id": register(http, fn),
            "payload": serialize((args, {})),
            "max_attempts": 2,
        }
        task_id = http.post("/execute_function", json=body).json()["task_id"]
        result = wait_result(http, task_id)
        assert result["status"] == "FAILED"
        assert isinstance(deserialize(result["result"]), RuntimeError)
        view = http.get(f"/v1/tasks/{task_id}").json()
        assert view["error_kind"] == "worker_lost"
        assert view["attempt"] == 2
        assert "slot process died" in view["error"]
    # The platform still has all its slots.
    function_id = register(http, userfuncs.nap)
    task_ids = [
        http.post(
            "/execute_function",
            json={"function_id": function_id, "payload": serialize(((0.3,), {}))},
        ).json()["task_id"]
        for _ in range(4)
    ]
    views = wait_all(http, task_ids, timeout_s=30)
    finished = sorted(v["finished_at_ms"] for v in views.values())
    starts = sorted(v["started_at_ms"] for v in views.values())
    assert starts[-1] < finished[0], "all four ran side by side"


def _children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-s", str(os.getsid(pid))], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_sigkill_of_the_dispatcher_mid_run_loses_nothing(fresh) -> None:  # type: ignore[no-untyped-def]
    # Given 200 tasks queued and running
    platform, http, tmp = fresh
    log = tmp / "executions.log"
    function_id = register(http, userfuncs.record)
    payloads = [serialize(((str(log), i, 0.05), {})) for i in range(200)]
    task_ids = http.post(
        "/v1/tasks/batch", json={"function_id": function_id, "payloads": payloads}
    ).json()["task_ids"]
    started = http.get(f"/result/{task_ids[8]}", params={"wait": 20}).json()
    assert started["status"] == "COMPLETED"
    # When the dispatcher process alone is killed with SIGKILL
    dispatcher = platform.dispatcher
    assert dispatcher is not None and dispatcher.popen is not None
    session = os.getsid(dispatcher.popen.pid)
    os.kill(dispatcher.popen.pid, signal.SIGKILL)
    dispatcher.popen.wait(timeout=10)
    # Then its slot processes do not outlive it
    _wait_until(lambda: not _session_members(session), 10, "slot processes outlived the dispatcher")
    # And once a dispatcher runs again, every task completes with the right result
    platform.start_dispatcher()
    views = wait_all(http, task_ids, timeout_s=120)
    assert [deserialize(views[t]["result"]) for t in task_ids] == list(range(200))
    ran = executions(log)
    assert set(ran) == set(range(200))
    repeated = sum(ran.values()) - 200
    print(f"repeated executions after the crash: {repeated}")
    # What may run again: the attempts running at the crash (at most one per slot) and
    # results that reached the dying dispatcher but not Redis (at most one per slot).
    slots = 4 * (2 if platform.workers else 1)
    assert repeated <= 2 * slots


def _session_members(session: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,sid="], capture_output=True, text=True)
    return [
        int(p) for p, s in (line.split() for line in out.stdout.splitlines()) if int(s) == session
    ]


def _wait_until(predicate, timeout_s: float, message: str) -> None:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(message)


def test_a_second_dispatcher_stands_by_and_takes_over(fresh) -> None:  # type: ignore[no-untyped-def]
    # Given a second dispatcher started by mistake
    platform, http, tmp = fresh
    log = tmp / "executions.log"
    first = platform.dispatcher
    second = platform.start_dispatcher()
    function_id = register(http, userfuncs.record)
    # Then every task still runs exactly once (only the lease holder dispatches)
    payloads = [serialize(((str(log), i), {})) for i in range(40)]
    task_ids = http.post(
        "/v1/tasks/batch", json={"function_id": function_id, "payloads": payloads}
    ).json()["task_ids"]
    views = wait_all(http, task_ids)
    assert all(v["status"] == "COMPLETED" and v["attempt"] == 1 for v in views.values())
    assert executions(log) == Counter(range(40))
    # When the first dies, the second takes over
    assert first is not None
    first.kill()
    task_id = http.post(
        "/execute_function",
        json={"function_id": function_id, "payload": serialize(((str(log), 99), {}))},
    ).json()["task_id"]
    assert deserialize(wait_result(http, task_id, timeout_s=30)["result"]) == 99
    assert second.alive()


def test_local_mode_recovers_when_the_slots_fork_server_dies(tmp_path: Path) -> None:
    with (
        make_platform(tmp_path, DispatchMode.LOCAL, slots=1) as platform,
        httpx.Client(base_url=platform.url, timeout=60) as http,
    ):
        # Given a task running in a slot (local mode's worker loop runs in the dispatcher)
        forkserver = deserialize(
            wait_result(http, execute(http, register(http, userfuncs.identity)))["result"]
        )["forkserver"]
        task_id = execute(http, register(http, userfuncs.nap), 1)
        running_on(http, task_id)
        # When the fork server the slots come from is killed (its slots die with it)
        os.kill(forkserver, signal.SIGKILL)
        # Then the task runs again in a slot of a new fork server and completes
        result = wait_result(http, task_id, timeout_s=30)
        assert result["status"] == "COMPLETED"
        assert http.get(f"/v1/tasks/{task_id}").json()["attempt"] == 2
        doubled = wait_result(http, execute(http, register(http, userfuncs.double), 2))
        assert deserialize(doubled["result"]) == 4
