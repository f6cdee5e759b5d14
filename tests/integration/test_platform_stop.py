"""Stopping the local platform drains: running tasks finish, nothing runs twice."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import userfuncs

from common.models import DispatchMode
from tests.conftest import execute, make_platform, register, running_on, wait_result


def test_stop_lets_running_tasks_finish_once(tmp_path: Path) -> None:
    """One task running on each of two workers when stop() is called."""
    executions = tmp_path / "executions"
    platform = make_platform(
        tmp_path, DispatchMode.PULL, workers=2, slots=1, env={"FAAS_DRAIN_TIMEOUT_S": "20"}
    )
    with platform, httpx.Client(base_url=platform.url, timeout=60) as http:
        record = register(http, userfuncs.record)
        task_ids = [execute(http, record, str(executions), i, 1.0) for i in (7, 8)]
        workers = {running_on(http, task_id)["worker_id"] for task_id in task_ids}
        assert len(workers) == 2
        started = time.monotonic()
        platform.stop()
        took = time.monotonic() - started

    # Come back on the same data: a task handed back would run again now.
    with (
        make_platform(tmp_path, DispatchMode.PULL, workers=1, slots=1) as again,
        httpx.Client(base_url=again.url, timeout=60) as http,
    ):
        views = [wait_result(http, t) and http.get(f"/v1/tasks/{t}").json() for t in task_ids]
    assert [(v["status"], v["attempt"]) for v in views] == [("COMPLETED", 1)] * 2, views
    assert sorted(executions.read_text().split()) == ["7", "8"]
    # Each task had at most 1 s left; the drain timeout is 20 s.
    assert took < 8, f"stop took {took:.1f} s"
