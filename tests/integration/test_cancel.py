"""Cancelling tasks on a real platform (redis-server, dispatcher, workers, gateway): a
queued task never starts, a running one is killed and its slot serves again, a
cancel racing completion ends each task exactly once, the course API shows FAILED,
and the SDK's map cancels what is outstanding on Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError
from pathlib import Path

import httpx
import pytest
import userfuncs

from common.models import DispatchMode
from common.store import Store
from faas import TaskCancelled
from faas.client import Client, loads
from faas.platform import LocalPlatform
from tests.conftest import (
    INTEGRATION_DIR,
    deserialize,
    execute,
    make_platform,
    register,
    running_on,
    serialize,
    wait_all,
)

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(
    scope="module",
    params=[DispatchMode.LOCAL, DispatchMode.PULL, DispatchMode.PUSH],
    ids=lambda m: m.value,
)
def one_slot(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalPlatform]:
    """One slot in all: a task that holds it keeps every other one QUEUED, in the
    stream or read ahead (no prefetch: test_prefetch cancels a prefetched task)."""
    tmp = tmp_path_factory.mktemp(f"cancel-{request.param.value}")
    env = {"FAAS_PREFETCH": "0"}
    with make_platform(tmp, request.param, workers=1, slots=1, env=env) as platform:
        yield platform


@pytest.fixture
def http(one_slot: LocalPlatform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=one_slot.url, timeout=60) as client:
        yield client


def cancel(http: httpx.Client, task_id: str) -> dict:
    response = http.delete(f"/v1/tasks/{task_id}")
    assert response.status_code == 200, response.text
    return response.json()


def until_ended(http: httpx.Client, task_id: str, timeout_s: float = 20) -> dict:
    view = http.get(f"/v1/tasks/{task_id}", params={"wait": timeout_s}).json()
    assert view["status"] in ("COMPLETED", "FAILED", "CANCELLED"), view
    return view


def queue_depth(platform: LocalPlatform) -> tuple[int, int]:
    async def read() -> tuple[int, int]:
        store = Store.from_url(platform.redis_url, prefix="faas")
        try:
            return await store.queue_depth()
        finally:
            await store.close()

    return asyncio.run(read())


@pytest.mark.parametrize("read_ahead", [False, True], ids=["in-the-stream", "read-ahead"])
def test_a_queued_task_cancelled_never_starts(
    one_slot: LocalPlatform, http: httpx.Client, tmp_path: Path, read_ahead: bool
) -> None:
    """Queued behind a blocker: still in the stream, or (submitted in the blocker's
    batch) read ahead by the dispatcher, in its backlog and pending list."""
    release, marker = tmp_path / "release", tmp_path / "ran"
    hold = register(http, userfuncs.hold)
    if read_ahead:
        body = {"function_id": hold, "payloads": [serialize(((str(release),), {})),
                serialize(((str(release), str(marker)), {}))]}  # fmt: skip
        blocker, queued = http.post("/v1/tasks/batch", json=body).json()["task_ids"]
    else:
        blocker = execute(http, hold, str(release))
        running_on(http, blocker)
        queued = execute(http, hold, str(release), str(marker))
    running_on(http, blocker)
    assert http.get(f"/v1/tasks/{queued}").json()["status"] == "QUEUED"
    assert queue_depth(one_slot) == ((0, 2) if read_ahead else (1, 1))

    view = cancel(http, queued)
    assert view["status"] == "CANCELLED" and view["error_kind"] == "cancelled"
    assert view["started_at_ms"] is None and view["finished_at_ms"]
    assert queue_depth(one_slot) == (0, 1), "its entry is gone"
    release.touch()
    assert until_ended(http, blocker)["status"] == "COMPLETED"
    # The slot is free and served the blocker; another task now runs to its end, so
    # had the cancelled one been dispatched it would have run by now.
    after = execute(http, register(http, userfuncs.echo), "after")
    assert until_ended(http, after)["status"] == "COMPLETED"
    assert not marker.exists(), "the cancelled task ran"
    assert http.get(f"/v1/tasks/{queued}").json()["status"] == "CANCELLED"


def test_a_running_task_is_killed_and_its_slot_serves_again(
    http: httpx.Client, tmp_path: Path
) -> None:
    forever = execute(http, register(http, userfuncs.hold), str(tmp_path / "never"))
    running_on(http, forever)
    started = time.monotonic()
    view = cancel(http, forever)
    assert view["status"] == "CANCELLED" and view["started_at_ms"]
    # The only slot runs the next task: the blocked one was killed, well before its
    # deadline.
    after = execute(http, register(http, userfuncs.echo), "after")
    assert until_ended(http, after, timeout_s=10)["status"] == "COMPLETED"
    assert time.monotonic() - started < 10
    final = http.get(f"/v1/tasks/{forever}").json()
    assert final["status"] == "CANCELLED", "the killed attempt's report changed nothing"
    assert isinstance(loads(final["result"]), CancelledError)


def test_cancelling_twice_or_after_the_end_changes_nothing(http: httpx.Client) -> None:
    echo = register(http, userfuncs.echo)
    finished = execute(http, echo, 7)
    assert until_ended(http, finished)["status"] == "COMPLETED"
    assert cancel(http, finished)["status"] == "COMPLETED"
    assert loads(cancel(http, finished)["result"]) == 7

    task = execute(http, register(http, userfuncs.nap), 60)
    first = cancel(http, task)
    assert first["status"] == "CANCELLED"
    assert cancel(http, task) == first


def test_the_course_api_shows_a_cancelled_task_failed_with_an_error(
    http: httpx.Client,
) -> None:
    task = execute(http, register(http, userfuncs.nap), 60)
    cancel(http, task)
    assert http.get(f"/status/{task}").json() == {"task_id": task, "status": "FAILED"}
    body = http.get(f"/result/{task}").json()
    assert body["status"] == "FAILED"
    assert isinstance(deserialize(body["result"]), CancelledError)


def test_unknown_or_malformed_ids_are_refused_and_nothing_is_cancelled(
    http: httpx.Client,
) -> None:
    assert http.delete(f"/v1/tasks/{UNKNOWN_ID}").status_code == 404
    assert http.delete("/v1/tasks/nope").status_code == 400
    task = execute(http, register(http, userfuncs.nap), 60)
    response = http.post("/v1/tasks/cancel", json={"task_ids": [task, UNKNOWN_ID]})
    assert response.status_code == 404 and UNKNOWN_ID in response.json()["detail"]
    assert http.get(f"/v1/tasks/{task}").json()["status"] in ("QUEUED", "RUNNING")
    too_many = {"task_ids": [UNKNOWN_ID] * 10_001}
    assert http.post("/v1/tasks/cancel", json=too_many).status_code == 400
    assert http.post("/v1/tasks/cancel", json={"task_ids": []}).status_code == 422
    both = http.post("/v1/tasks/cancel", json={"task_ids": [task, task]}).json()["tasks"]
    assert [v["status"] for v in both] == ["CANCELLED"], "once each"


def test_cancel_racing_completion_ends_each_task_exactly_once(
    one_slot: LocalPlatform, http: httpx.Client
) -> None:
    echo = register(http, userfuncs.echo)
    statuses: dict[str, str] = {}
    for i in range(150):
        task = execute(http, echo, i)
        if i % 3:
            time.sleep(i % 7 / 1000)  # vary where the cancel lands: queued, running, ended
        statuses[task] = cancel(http, task)["status"]
    assert set(statuses.values()) <= {"COMPLETED", "CANCELLED"}
    ended = wait_all(http, list(statuses))
    for task, first in statuses.items():
        view = ended[task]
        assert view["status"] == first, "an answered cancel is the final word"
        value = loads(view["result"])
        if first == "COMPLETED":
            assert isinstance(value, int)
        else:
            assert isinstance(value, CancelledError) and view["error_kind"] == "cancelled"
    # Whatever was dispatched settles: nothing stays held, nothing changes later.
    last = execute(http, echo, "last")
    assert until_ended(http, last)["status"] == "COMPLETED"
    deadline = time.monotonic() + 10
    while queue_depth(one_slot) != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert queue_depth(one_slot) == (0, 0)
    again = wait_all(http, list(statuses))
    assert {t: v["status"] for t, v in again.items()} == statuses
    assert "CANCELLED" in statuses.values()


def test_the_sdk_cancels_and_raises_task_cancelled(one_slot: LocalPlatform) -> None:
    with Client(one_slot.url) as client:
        remote = client.register(userfuncs.nap)
        task = remote.submit(60)
        assert task.cancel()["status"] == "CANCELLED"
        with pytest.raises(TaskCancelled, match=task.id):
            task.result(timeout=5)
        other = remote.submit(60)
        views = client.cancel([other.id, task.id])
        assert [v["status"] for v in views] == ["CANCELLED", "CANCELLED"]


def test_the_cli_cancels_tasks(one_slot: LocalPlatform, http: httpx.Client) -> None:
    def faas(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "faas.cli", *args, "--url", one_slot.url]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    task = execute(http, register(http, userfuncs.nap), 60)
    done = faas("cancel", task, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"task_id": task, "status": "CANCELLED"}]
    assert faas("cancel", task).stdout.split() == [task, "CANCELLED"]
    result = faas("result", task)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: task {task} CANCELLED: TaskCancelled"), result
    unknown = faas("cancel", task, UNKNOWN_ID)
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: 404"), unknown


MAP_SCRIPT = """
import sys
from faas import Client
import userfuncs

client = Client(sys.argv[1])
remote = client.register(userfuncs.nap)
try:
    remote.map([30] * 40)
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_map_cancels_its_outstanding_tasks_on_ctrl_c(one_slot: LocalPlatform) -> None:
    env = {**os.environ, "PYTHONPATH": f"{INTEGRATION_DIR}{os.pathsep}{os.getcwd()}"}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(MAP_SCRIPT), one_slot.url],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    output: list[str] = []
    waiting = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        while chunk := proc.stderr.read(1):
            output.append(chunk)
            if "0/40" in "".join(output[-200:]):  # the progress bar: map has its task ids
                waiting.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert waiting.wait(30), "".join(output)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130, "".join(output)
        reader.join(10)
        text = "".join(output)
        assert "Traceback" not in text, text
        # Its own line, unless Ctrl-C cut the progress bar's first drawing short.
        assert text.endswith("cancelled 40 outstanding tasks\n"), text
        assert text.count("cancelled") == 1, text
        assert queue_depth(one_slot) == (0, 0)
        with httpx.Client(base_url=one_slot.url, timeout=30) as http:
            after = execute(http, register(http, userfuncs.echo), "after")
            assert until_ended(http, after, timeout_s=10)["status"] == "COMPLETED"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
        proc.stderr.close()


def test_a_cancel_while_no_dispatcher_runs_kills_the_attempt_once_one_does(
    tmp_path: Path,
) -> None:
    """The notice waits in the store; the restarted dispatcher has the worker that
    still runs the attempt (and claims it back) kill it."""
    with (
        make_platform(tmp_path, DispatchMode.PULL, workers=1, slots=1) as platform,
        httpx.Client(base_url=platform.url, timeout=60) as http,
    ):
        forever = execute(http, register(http, userfuncs.hold), str(tmp_path / "never"))
        running_on(http, forever)
        dispatcher = platform.dispatcher
        assert dispatcher is not None and dispatcher.popen is not None
        os.kill(dispatcher.popen.pid, signal.SIGKILL)
        dispatcher.popen.wait(timeout=10)
        assert cancel(http, forever)["status"] == "CANCELLED"
        platform.start_dispatcher()
        # The only slot runs the next task long before the held one's deadline (300 s).
        after = execute(http, register(http, userfuncs.echo), "after")
        assert until_ended(http, after, timeout_s=20)["status"] == "COMPLETED"
        assert http.get(f"/v1/tasks/{forever}").json()["status"] == "CANCELLED"
