"""What tasks print reaches `GET /v1/tasks/{id}/logs`, the SDK and `faas logs`, with
real processes: Python prints, raw fd writes and child processes; the per-attempt
cap; following a running task; and the output of a killed attempt next to its re-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import printfuncs
import pytest

from common.models import DispatchMode, new_id
from faas import Client
from faas.platform import LocalPlatform
from tests.conftest import execute, make_platform, register, running_on, wait_result


def logs_of(http: httpx.Client, task_id: str) -> dict:
    response = http.get(f"/v1/tasks/{task_id}/logs")
    assert response.status_code == 200, response.text
    return response.json()


def eventually(check, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} within {timeout_s} s")


@pytest.fixture(scope="module")
def http(gateway: LocalPlatform):  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=gateway.url, timeout=60) as client:
        yield client


def test_prints_from_python_fds_and_children_appear_with_the_task(http: httpx.Client) -> None:
    task_id = execute(http, register(http, printfuncs.chatty), 3)
    assert wait_result(http, task_id)["status"] == "COMPLETED"
    view = logs_of(http, task_id)
    assert view["status"] == "COMPLETED" and view["truncated"] is False
    text = view["logs"]
    assert text.startswith("--- attempt 1 ---\n")
    for line in ("line 0", "line 2", "to stderr", "raw fd write", "from a child process"):
        assert line in text, text
    assert text.index("line 0") < text.index("line 2")


def test_a_task_that_prints_nothing_has_empty_logs_and_unknown_ids_are_404(
    http: httpx.Client,
) -> None:
    task_id = execute(http, register(http, printfuncs.flood), 0)
    wait_result(http, task_id)
    assert logs_of(http, task_id)["logs"] == "--- attempt 1 ---\n\n"
    assert http.get(f"/v1/tasks/{new_id()}/logs").status_code == 404
    assert http.get(f"/v1/tasks/{new_id()}/logs", params={"follow": "true"}).status_code == 404


def test_output_over_the_cap_is_cut_and_marked(http: httpx.Client) -> None:
    task_id = execute(http, register(http, printfuncs.flood), 200_000)
    assert wait_result(http, task_id)["status"] == "COMPLETED"
    view = logs_of(http, task_id)
    assert view["truncated"] is True
    assert "--- output truncated: over 65,536 bytes in this attempt ---" in view["logs"]
    assert view["logs"].count("x") == 64 * 1024


def test_follow_streams_output_before_the_task_ends(
    http: httpx.Client, gateway: LocalPlatform, tmp_path: Path
) -> None:
    event = tmp_path / "go"
    task_id = execute(http, register(http, printfuncs.print_wait_print), str(event))
    client = Client(gateway.url)
    task = client.task(task_id)
    seen: list[str] = []
    got_first = threading.Event()

    def read() -> None:
        for text in task.follow_logs():
            seen.append(text)
            if "before the event" in "".join(seen):
                got_first.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert got_first.wait(20), f"no output while the task ran: {seen}"
    assert http.get(f"/v1/tasks/{task_id}").json()["status"] == "RUNNING"
    assert "after the event" not in "".join(seen)
    event.touch()
    reader.join(20)
    assert not reader.is_alive(), "following did not end with the task"
    assert "after the event" in "".join(seen)
    assert task.logs() == "".join(seen)
    client.close()


def test_the_cli_prints_a_tasks_logs(http: httpx.Client, gateway: LocalPlatform) -> None:
    task_id = execute(http, register(http, printfuncs.chatty), 1)
    wait_result(http, task_id)
    for extra in ([], ["-f"]):
        out = subprocess.run(
            [sys.executable, "-m", "faas.cli", "--url", gateway.url, "logs", task_id, *extra],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        assert "line 0" in out and "from a child process" in out


def test_a_killed_attempts_output_and_its_rerun_both_appear(tmp_path: Path) -> None:
    marker = tmp_path / "ran-once"
    with (
        make_platform(tmp_path, DispatchMode.PULL, workers=2, slots=1) as platform,
        httpx.Client(base_url=platform.url, timeout=60) as http,
    ):
        task_id = execute(http, register(http, printfuncs.print_then_hang_once), str(marker))
        view = running_on(http, task_id)
        eventually(lambda: "running in pid" in logs_of(http, task_id)["logs"], 10,
                   "the first attempt's output was not stored")  # fmt: skip
        worker = platform.worker_ids[view["worker_id"]]
        assert worker.popen is not None
        os.kill(worker.popen.pid, signal.SIGKILL)
        assert wait_result(http, task_id)["status"] == "COMPLETED"
        text = logs_of(http, task_id)["logs"]
        assert text.index("--- attempt 1 ---") < text.index("--- attempt 2 ---"), text
        assert text.count("running in pid") == 2
