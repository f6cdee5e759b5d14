"""What is queued, running and done: the task listing, the workers, the stats, and
functions called by name; through the HTTP API, the SDK and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from common.models import DispatchMode
from faas import ApiError, Client
from faas.platform import LocalPlatform
from tests.conftest import make_platform


@pytest.fixture(scope="module")
def pull(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    """Two workers of two slots: the workers' view has something to show."""
    with make_platform(tmp_path_factory.mktemp("status"), DispatchMode.PULL, slots=2) as p:
        yield p


@pytest.fixture(scope="module")
def client(pull: LocalPlatform) -> Iterator[Client]:
    with Client(pull.url) as c:
        yield c


def eventually(check, timeout_s: float = 15.0):  # type: ignore[no-untyped-def]
    """`check()`'s first truthy value, polled for at most timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout_s} s: {check}")


def test_tasks_are_listed_newest_first_and_filtered(client: Client) -> None:
    ok = client.register(lambda x: x)
    bad = client.register(lambda x: 1 / 0)
    done = [ok.submit(i) for i in range(5)]
    failed = bad.submit(0)
    for task in [*done, failed]:
        task.wait(timeout=30)
    newest = client.tasks(limit=6)
    assert [t["task_id"] for t in newest] == [failed.id, *[t.id for t in reversed(done)]]
    assert all(t["result"] is None for t in newest)  # a listing never carries results
    assert [t["task_id"] for t in client.tasks(status="FAILED", function_id=bad.id)] == [failed.id]
    assert {t["task_id"] for t in client.tasks(function_id=ok.id)} == {t.id for t in done}


def test_pages_follow_each_other_without_gaps_or_repeats(pull: LocalPlatform) -> None:
    with Client(pull.url) as sdk, httpx.Client(base_url=pull.url, timeout=30) as http:
        fn = sdk.register(lambda x: x)
        batch = fn.submit_many(((i,), {}) for i in range(25))  # one batch: one queued ms
        seen: list[str] = []
        cursor = None
        while True:
            params = {"function_id": fn.id, "limit": 7, **({"cursor": cursor} if cursor else {})}
            page = http.get("/v1/tasks", params=params).json()
            seen += [t["task_id"] for t in page["tasks"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(t.id for t in batch)
        assert len(seen) == len(set(seen))
        bad = http.get("/v1/tasks", params={"cursor": "yesterday"})
        assert bad.status_code == 400 and "cursor" in bad.json()["detail"]
        assert http.get("/v1/tasks", params={"status": "SLEEPING"}).status_code == 422


def test_workers_and_stats_show_capacity_and_load(pull: LocalPlatform, client: Client) -> None:
    workers = eventually(lambda: len(client.workers()) == 2 and client.workers())
    assert all(w["slots"] == 2 and not w["draining"] for w in workers)
    assert all(abs(w["last_heartbeat_ms"] / 1000 - time.time()) < 10 for w in workers)
    release = Path(pull.config.data_dir) / "release"
    before = _completed(client.stats())
    gate = client.register(_wait_for_file)
    blocked = [gate.submit(str(release)) for _ in range(5)]  # 4 slots: one waits
    stats = eventually(lambda: (s := client.stats())["running"] == 4 and s)
    assert stats["queued"] == 1 and stats["workers"] == 2 and stats["slots"] == 4
    assert sum(w["busy"] for w in client.workers()) == 4
    release.touch()
    for task in blocked:
        assert task.result(timeout=30) == "released"
    stats = eventually(lambda: (s := client.stats())["running"] == 0 and s)
    assert stats["queued"] == 0
    assert eventually(lambda: _completed(client.stats()) >= before + 5)
    assert len(stats["ended_per_minute"]) == 60


def _completed(stats: dict) -> int:  # type: ignore[type-arg]
    return sum(m["completed"] for m in stats["ended_per_minute"])


def _wait_for_file(path: str) -> str:
    import os
    import time

    while not os.path.exists(path):
        time.sleep(0.01)
    return "released"


def test_a_name_calls_its_latest_version_and_old_ids_keep_working(client: Client) -> None:
    first = client.register(lambda: "v1", name="greeting")
    second = client.register(lambda: "v2", name="greeting")
    assert (first.version, second.version) == (1, 2)
    assert client.function("greeting")() == "v2"
    assert client.function("greeting", version=1)() == "v1"
    assert client.function(first.id)() == "v1"
    with pytest.raises(ApiError) as missing:
        client.function("no-such-name")
    assert missing.value.status_code == 404


def test_the_cli_calls_by_name_and_lists(pull: LocalPlatform, client: Client) -> None:
    client.register(lambda x: x * 2, name="double-it")

    def faas(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "faas.cli", "--url", pull.url, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    called = faas("call", "double-it", "21")
    assert called.returncode == 0 and called.stdout.strip() == "42", called.stderr
    listed = faas("ps", "--json", "-n", "1")
    assert json.loads(listed.stdout)[0]["status"] == "COMPLETED"
    assert "COMPLETED" in faas("ps", "-n", "1").stdout
    assert faas("workers").stdout.count("/2 busy") == 2
    assert "queued 0" in faas("stats").stdout


def test_a_wait_for_any_answers_as_soon_as_one_ends(pull: LocalPlatform, client: Client) -> None:
    """What moves map's progress bar per task: the batch wait answers at the first end
    instead of at the last."""
    release = Path(pull.config.data_dir) / "release-any"
    slow = client.register(_wait_for_file).submit(str(release))
    fast = client.register(lambda: "fast").submit()
    with httpx.Client(base_url=pull.url, timeout=60) as http:
        started = time.monotonic()
        body = {"task_ids": [slow.id, fast.id], "wait": 20, "any": True}
        views = {v["task_id"]: v for v in http.post("/v1/tasks/wait", json=body).json()["tasks"]}
        took = time.monotonic() - started
    release.touch()
    assert views[fast.id]["status"] == "COMPLETED" and views[slow.id]["status"] != "COMPLETED"
    assert took < 10
    assert slow.result(timeout=30) == "released"
