"""What one sequential call costs the store: the dispatcher defers writing RUNNING
(see Dispatcher._mark_running), so a task that ends within that delay is committed with
its start in one script call, and its record still says when and where it started."""

from __future__ import annotations

from pathlib import Path

import httpx
import redis
import userfuncs

from common.models import DispatchMode
from tests.conftest import execute, make_platform, register, wait_result


def _script_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("evalsha", "eval"))


def test_a_fast_task_costs_two_script_calls_and_keeps_its_start(tmp_path: Path) -> None:
    with (
        make_platform(tmp_path, DispatchMode.LOCAL, slots=1) as platform,
        httpx.Client(base_url=platform.url, timeout=60) as http,
    ):
        admin = redis.Redis.from_url(platform.redis_url)
        double = register(http, userfuncs.double)
        wait_result(http, execute(http, double, 0))  # warm: function cached, scripts loaded
        before, calls = _script_calls(admin), 20
        task_ids = []
        for i in range(calls):
            task_ids.append(execute(http, double, i))
            assert wait_result(http, task_ids[-1])["status"] == "COMPLETED"
        per_call = (_script_calls(admin) - before) / calls
        # submit.lua and finish.lua; start.lua only if a task outlived the delay (a
        # loaded machine), and the dispatcher's own housekeeping is not scripted
        assert per_call <= 2.3, per_call
        for task_id in task_ids:
            view = http.get(f"/v1/tasks/{task_id}").json()
            assert view["worker_id"] and view["started_at_ms"]
            assert view["queued_at_ms"] <= view["started_at_ms"] <= view["finished_at_ms"]
        admin.close()
