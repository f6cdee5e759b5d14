"""Prefetching workers (see worker.loop): a worker holds tasks beyond its free slots,
so a slot that frees starts the next task without a round trip to the dispatcher.
A prefetched task stays QUEUED until it starts, and one that never started goes
back without spending an attempt when its worker drains or dies."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import userfuncs

from common.models import DispatchMode
from faas.platform import LocalPlatform
from tests.conftest import execute, make_platform, register, running_on, wait_result

REMOTE = [DispatchMode.PULL, DispatchMode.PUSH]


def _eventually(predicate: Callable[[], bool], timeout_s: float = 15) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def one_slot(
    tmp: Path, mode: DispatchMode, **overrides: Any
) -> Iterator[tuple[LocalPlatform, httpx.Client]]:
    """One worker with one slot: a task sent while it is busy is held prefetched."""
    with (
        make_platform(tmp, mode, workers=1, slots=1, **overrides) as platform,
        httpx.Client(base_url=platform.url, timeout=60) as http,
    ):
        yield platform, http


def _prefetched(http: httpx.Client) -> int:
    return sum(w["prefetched"] for w in http.get("/v1/workers").json()["workers"])


@pytest.mark.parametrize("mode", [DispatchMode.LOCAL, *REMOTE], ids=lambda m: f"{m.value}-mode")
def test_a_prefetched_task_waits_queued_and_runs_when_the_slot_frees(
    tmp_path: Path, mode: DispatchMode
) -> None:
    with one_slot(tmp_path, mode) as (_platform, http):
        nap = register(http, userfuncs.nap)
        first = execute(http, nap, 2)
        running_on(http, first)
        # Given a second task while the only slot is busy
        second = execute(http, nap, 0)
        # Then the worker holds it, and the store still says QUEUED
        assert _eventually(lambda: _prefetched(http) == 1)
        view = http.get(f"/v1/tasks/{second}").json()
        assert view["status"] == "QUEUED" and view["attempt"] == 1
        stats = http.get("/v1/stats").json()
        assert stats["running"] == 1 and stats["queued"] == 1
        # And it runs once the slot frees, at its first attempt
        assert wait_result(http, second)["status"] == "COMPLETED"
        done = http.get(f"/v1/tasks/{second}").json()
        assert done["attempt"] == 1 and done["started_at_ms"] is not None
        # (started when the 2 s nap let the slot go, not when it was sent)
        assert done["started_at_ms"] > http.get(f"/v1/tasks/{first}").json()["started_at_ms"] + 1500


@pytest.mark.parametrize("mode", REMOTE, ids=lambda m: f"{m.value}-mode")
def test_a_dead_workers_prefetched_task_goes_back_without_spending_an_attempt(
    tmp_path: Path, mode: DispatchMode
) -> None:
    with one_slot(tmp_path, mode) as (platform, http):
        nap = register(http, userfuncs.nap)
        first = execute(http, nap, 3)
        worker = platform.worker_ids[running_on(http, first)["worker_id"]]
        second = execute(http, nap, 0)
        assert _eventually(lambda: _prefetched(http) == 1)
        # When the worker dies (kill -9, slots too) and another one comes
        worker.kill()
        platform.start_worker()
        # Then the running task runs again (attempt 2), the prefetched one never ran
        # before, so it keeps its first attempt
        for task_id, attempt in ((first, 2), (second, 1)):
            assert wait_result(http, task_id)["status"] == "COMPLETED"
            assert http.get(f"/v1/tasks/{task_id}").json()["attempt"] == attempt


@pytest.mark.parametrize("mode", REMOTE, ids=lambda m: f"{m.value}-mode")
def test_a_draining_worker_gives_back_what_it_prefetched_at_once(
    tmp_path: Path, mode: DispatchMode
) -> None:
    env = {"FAAS_DRAIN_TIMEOUT_S": "20", "FAAS_LIVENESS_TIMEOUT_S": "20"}
    with one_slot(tmp_path, mode, env=env) as (platform, http):
        nap = register(http, userfuncs.nap)
        long = execute(http, nap, 6)
        draining_id = running_on(http, long)["worker_id"]
        short = execute(http, nap, 0)
        assert _eventually(lambda: _prefetched(http) == 1)
        # When the worker is told to stop (SIGTERM: it drains) and another one comes
        worker = platform.worker_ids[draining_id]
        assert worker.popen is not None
        os.kill(worker.popen.pid, signal.SIGTERM)
        platform.start_worker()
        # Then the prefetched task runs on the new worker before the long one ends,
        # at its first attempt, and the long one finishes where it runs
        assert wait_result(http, short, timeout_s=30)["status"] == "COMPLETED"
        view = http.get(f"/v1/tasks/{short}").json()
        assert view["worker_id"] != draining_id and view["attempt"] == 1
        assert http.get(f"/v1/tasks/{long}").json()["status"] == "RUNNING"
        assert wait_result(http, long, timeout_s=30)["status"] == "COMPLETED"
        assert http.get(f"/v1/tasks/{long}").json()["attempt"] == 1
        log = (tmp_path / "logs" / "dispatcher.log").read_text()
        assert "its worker drains: given back unstarted" in log


@pytest.mark.parametrize("mode", REMOTE, ids=lambda m: f"{m.value}-mode")
def test_a_task_prefetched_behind_a_long_one_moves_to_a_worker_that_joins(
    tmp_path: Path, mode: DispatchMode
) -> None:
    with one_slot(tmp_path, mode) as (platform, http):
        nap = register(http, userfuncs.nap)
        long = execute(http, nap, 60)
        busy_id = running_on(http, long)["worker_id"]
        short = execute(http, nap, 0)
        assert _eventually(lambda: _prefetched(http) == 1)
        # When a worker with a free slot joins (as a scale-up adds one)
        platform.start_worker()
        # Then the dispatcher recalls the prefetched task, and it runs there at once,
        # at its first attempt, instead of after the long one
        assert wait_result(http, short, timeout_s=20)["status"] == "COMPLETED"
        view = http.get(f"/v1/tasks/{short}").json()
        assert view["worker_id"] != busy_id and view["attempt"] == 1
        assert http.get(f"/v1/tasks/{long}").json()["status"] == "RUNNING"
        http.delete(f"/v1/tasks/{long}")


@pytest.mark.parametrize("mode", REMOTE, ids=lambda m: f"{m.value}-mode")
def test_a_prefetched_task_is_adopted_across_a_dispatcher_restart(
    tmp_path: Path, mode: DispatchMode
) -> None:
    with one_slot(tmp_path, mode) as (platform, http):
        log = tmp_path / "executions"
        record = register(http, userfuncs.record)
        long = execute(http, record, str(log), 0, 4)
        running_on(http, long)
        held = execute(http, record, str(log), 1)
        assert _eventually(lambda: _prefetched(http) == 1)
        # When the dispatcher dies (kill -9) and a new one starts
        assert platform.dispatcher is not None
        platform.dispatcher.kill()
        platform.start_dispatcher()
        # Then the worker's HELLO claims both: the running one and the one it holds,
        # which runs once the slot frees; neither runs twice or spends an attempt
        for task_id in (long, held):
            assert wait_result(http, task_id, timeout_s=30)["status"] == "COMPLETED"
            assert http.get(f"/v1/tasks/{task_id}").json()["attempt"] == 1
        # An attempt no worker claimed is re-queued after the recovery grace (3 s in
        # tests) and would run again: only waiting past it shows that none was
        time.sleep(3.5)
        assert sorted(log.read_text().split()) == ["0", "1"]


@pytest.mark.parametrize("mode", REMOTE, ids=lambda m: f"{m.value}-mode")
def test_a_cancelled_prefetched_task_never_runs(tmp_path: Path, mode: DispatchMode) -> None:
    with one_slot(tmp_path, mode) as (_platform, http):
        release, marker = tmp_path / "release", tmp_path / "ran"
        hold = register(http, userfuncs.hold)
        blocker = execute(http, hold, str(release))
        running_on(http, blocker)
        held = execute(http, hold, str(release), str(marker))
        assert _eventually(lambda: _prefetched(http) == 1)
        # When the task the worker holds is cancelled
        view = http.delete(f"/v1/tasks/{held}").json()
        assert view["status"] == "CANCELLED" and view["started_at_ms"] is None
        # Then the worker drops it: nothing is held, the blocker finishes, and a task
        # sent after it runs, so had the cancelled one been kept it would have run
        assert _eventually(lambda: _prefetched(http) == 0)
        release.touch()
        assert wait_result(http, blocker)["status"] == "COMPLETED"
        after = execute(http, register(http, userfuncs.echo), "after")
        assert wait_result(http, after)["status"] == "COMPLETED"
        assert not marker.exists(), "the cancelled task ran"
        assert http.get(f"/v1/tasks/{held}").json()["status"] == "CANCELLED"


def test_prefetch_zero_holds_nothing_beyond_the_slots(tmp_path: Path) -> None:
    with one_slot(tmp_path, DispatchMode.PULL, prefetch=0) as (_platform, http):
        nap = register(http, userfuncs.nap)
        first = execute(http, nap, 1.5)
        running_on(http, first)
        second = execute(http, nap, 0)
        time.sleep(0.5)  # several status publications (every 0.2 s here)
        assert _prefetched(http) == 0
        assert http.get("/v1/stats").json()["queued"] == 1
        assert wait_result(http, second)["status"] == "COMPLETED"
