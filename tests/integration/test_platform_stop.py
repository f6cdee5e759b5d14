"""Stopping the local platform drains: running tasks finish, nothing runs twice."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest
import userfuncs

from common.models import DispatchMode
from tests.conftest import execute, make_platform, register, running_on, wait_result


@pytest.mark.parametrize("mode", [DispatchMode.PULL, DispatchMode.LOCAL], ids=str)
def test_stop_lets_running_tasks_finish_once(tmp_path: Path, mode: DispatchMode) -> None:
    """Two tasks running (on two workers, or two local slots) when stop() is called."""
    executions = tmp_path / "executions"
    workers, slots = (2, 1) if mode == DispatchMode.PULL else (1, 2)
    platform = make_platform(
        tmp_path, mode, workers=workers, slots=slots, env={"FAAS_DRAIN_TIMEOUT_S": "20"}
    )
    with platform, httpx.Client(base_url=platform.url, timeout=60) as http:
        record = register(http, userfuncs.record)
        task_ids = [execute(http, record, str(executions), i, 1.0) for i in (7, 8)]
        for task_id in task_ids:
            running_on(http, task_id)
        started = time.monotonic()
        platform.stop()
        took = time.monotonic() - started

    # Come back on the same data: a task handed back would run again now.
    with (
        make_platform(tmp_path, mode, workers=1, slots=1) as again,
        httpx.Client(base_url=again.url, timeout=60) as http,
    ):
        views = [wait_result(http, t) and http.get(f"/v1/tasks/{t}").json() for t in task_ids]
    assert [(v["status"], v["attempt"]) for v in views] == [("COMPLETED", 1)] * 2, views
    assert sorted(executions.read_text().split()) == ["7", "8"]
    # Each task had at most 1 s left; the drain timeout is 20 s.
    assert took < 8, f"stop took {took:.1f} s"


def test_stop_is_bounded_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """A worker that cannot drain (frozen with its slots) is killed, group and all,
    once the drain timeout and its margin have passed; the rest stop normally."""
    platform = make_platform(
        tmp_path, DispatchMode.PULL, workers=2, slots=1, env={"FAAS_DRAIN_TIMEOUT_S": "1"}
    )
    with platform, httpx.Client(base_url=platform.url, timeout=60) as http:
        task_id = execute(http, register(http, userfuncs.nap), 60)
        frozen = platform.worker_ids[running_on(http, task_id)["worker_id"]]
        groups = [p.popen.pid for p in platform.processes() if p.popen is not None]
        frozen.signal(signal.SIGSTOP)
        started = time.monotonic()
        platform.stop()
        took = time.monotonic() - started
    assert took < 15, f"stop took {took:.1f} s"  # drain 1 s + margin 5 s, once, not per process
    assert all(not p.alive() for p in platform.processes())
    assert not living_in(groups)


def living_in(groups: list[int]) -> list[str]:
    """Processes of these process groups that still run (zombies waiting for an
    init that may be slow to reap them do not)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        state, _ppid, pgid = text.rpartition(")")[2].split()[:3]
        if int(pgid) in groups and state != "Z":
            found.append(text)
    return found
