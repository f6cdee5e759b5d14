"""Faults of the dispatcher and the workers themselves: a result that finishes
while the dispatcher is down, a worker killed with its user code still running,
results over the cap, and where local mode runs its worker loop."""

from __future__ import annotations

import glob
import os
import signal
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import userfuncs

from common.models import DispatchMode
from tests.conftest import (
    deserialize,
    execute,
    make_platform,
    register,
    running_on,
    task_running,
    wait_result,
)

REMOTE = [DispatchMode.PULL, DispatchMode.PUSH]


def wait_until(check, timeout_s: float, what: str) -> float:  # type: ignore[no-untyped-def]
    """Poll `check` until true; returns the seconds it took, fails after timeout_s."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if check():
            return time.monotonic() - start
        time.sleep(0.01)
    raise AssertionError(f"{what} within {timeout_s} s")


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("mode", REMOTE, ids=lambda m: f"{m.value}-mode")
def test_a_result_that_ends_while_the_dispatcher_is_down_commits_without_a_rerun(
    tmp_path: Path, mode: DispatchMode
) -> None:
    log = tmp_path / "executions"
    with (
        make_platform(tmp_path, mode, workers=1, slots=1) as platform,
        httpx.Client(base_url=platform.url, timeout=60) as http,
    ):
        # Given a task running when the dispatcher is killed
        task_id = execute(http, register(http, userfuncs.record), str(log), 1, 1.0)
        running_on(http, task_id)
        assert platform.dispatcher is not None
        platform.dispatcher.kill()
        # When it finishes while no dispatcher listens, and one comes back later
        wait_until(lambda: lines(log) == ["1"], 10, "the task did not finish")
        platform.start_dispatcher()
        # Then the worker's kept result is committed: one execution, attempt 1
        result = wait_result(http, task_id, timeout_s=30)
        assert result["status"] == "COMPLETED"
        assert http.get(f"/v1/tasks/{task_id}").json()["attempt"] == 1
        assert lines(log) == ["1"], "the task ran again"


@pytest.mark.parametrize("mode", REMOTE, ids=lambda m: f"{m.value}-mode")
def test_a_worker_killed_with_sigkill_takes_its_busy_slots_with_it(
    tmp_path: Path, mode: DispatchMode
) -> None:
    pidfile = tmp_path / "slot.pid"
    with task_running(tmp_path, mode, 30) as (platform, http, _):  # one worker busy
        # Given a function that never returns, running in a slot of a worker
        task_id = execute(http, register(http, userfuncs.spin_forever), str(pidfile))
        view = running_on(http, task_id)
        wait_until(lambda: pidfile.exists() and pidfile.read_text(), 10, "no slot pid")
        slot_pid = int(pidfile.read_text())
        # When only the worker's main process is killed (not its process group)
        worker = platform.worker_ids[view["worker_id"]]
        assert worker.popen is not None
        os.kill(worker.popen.pid, signal.SIGKILL)
        # Then the slot running user code dies within a second
        took = wait_until(lambda: not alive(slot_pid), 1.0, "the slot outlived its worker")
        print(f"slot gone {took:.3f} s after its worker")


def test_in_local_mode_a_dispatcher_killed_with_sigkill_takes_the_slots_with_it(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "slot.pid"
    with (
        make_platform(tmp_path, DispatchMode.LOCAL, slots=1) as platform,
        httpx.Client(base_url=platform.url, timeout=60) as http,
    ):
        execute(http, register(http, userfuncs.spin_forever), str(pidfile))
        wait_until(lambda: pidfile.exists() and pidfile.read_text(), 10, "no slot pid")
        slot_pid = int(pidfile.read_text())
        assert platform.dispatcher is not None and platform.dispatcher.popen is not None
        os.kill(platform.dispatcher.popen.pid, signal.SIGKILL)
        wait_until(lambda: not alive(slot_pid), 1.0, "the slot outlived its dispatcher")


@pytest.mark.parametrize("mode", [DispatchMode.LOCAL, DispatchMode.PULL])
def test_a_result_over_the_cap_fails_its_task_and_disturbs_nothing_else(
    tmp_path: Path, mode: DispatchMode
) -> None:
    with (
        make_platform(tmp_path, mode, env={"FAAS_MAX_RESULT_BYTES": "100000"}) as platform,
        httpx.Client(base_url=platform.url, timeout=60) as http,
    ):
        blob = register(http, userfuncs.blob)
        task_id = execute(http, blob, 200_000)
        assert wait_result(http, task_id)["status"] == "FAILED"
        view = http.get(f"/v1/tasks/{task_id}").json()
        assert view["error_kind"] == "result_too_large"
        assert "100,000-byte limit" in view["error"]
        small = wait_result(http, execute(http, blob, 10))
        assert small["status"] == "COMPLETED" and deserialize(small["result"]) == b"x" * 10


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(child) for child in f.read().split()]


def _argv(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().rstrip(b"\0").decode().split("\0")


def test_local_mode_runs_its_worker_loop_in_the_dispatcher_and_its_slots_under_it(
    tmp_path: Path,
) -> None:
    log = tmp_path / "executions"
    with (
        make_platform(tmp_path, DispatchMode.LOCAL, slots=1) as platform,
        httpx.Client(base_url=platform.url, timeout=60) as http,
    ):
        assert platform.dispatcher is not None and platform.dispatcher.popen is not None
        pid = platform.dispatcher.popen.pid
        # No worker process and no socket file anyone could connect to (the ipc:// endpoint)
        assert not [c for c in _children(pid) if "worker" in _argv(c)]
        assert not glob.glob(os.path.join(tempfile.gettempdir(), f"faas-*-{pid}-*.sock"))
        record = register(http, userfuncs.record)
        me = deserialize(
            wait_result(http, execute(http, register(http, userfuncs.identity)))["result"]
        )
        assert me["worker"] == pid  # the slots' fork server is the dispatcher's child
        # And none of the dispatcher's connections (to Redis) reaches a slot
        tcp = deserialize(
            wait_result(http, execute(http, register(http, userfuncs.tcp_sockets_held)))["result"]
        )
        assert tcp == [], tcp
        # When the slot running a task is killed, the task runs again in a new slot
        pidfile = tmp_path / "slot.pid"
        task_id = execute(http, register(http, userfuncs.spin_forever), str(pidfile))
        wait_until(lambda: pidfile.exists() and pidfile.read_text(), 10, "no slot pid")
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
        wait_until(lambda: http.get(f"/v1/tasks/{task_id}").json()["attempt"] == 2, 10,
                   "the task did not run again")  # fmt: skip
        assert http.delete(f"/v1/tasks/{task_id}").status_code == 200
        after = wait_result(http, execute(http, record, str(log), 1, 0), timeout_s=30)
        assert after["status"] == "COMPLETED" and lines(log) == ["1"]
