"""kubectl delete pod at random on workers, the dispatcher, the gateway and Redis
while tasks flow; then every accepted task must have ended correctly. Submits use
idempotency keys, so a submit retried after a lost answer never duplicates."""

from __future__ import annotations

import random
import threading
import time
import uuid

import httpx

from faas import Client
from faas.client import dumps
from tests.e2e.conftest import URL, kubectl, mode, pods


def submit(http: httpx.Client, function_id: str, i: int) -> str:
    body = {
        "function_id": function_id,
        "payload": dumps(((i,), {})),
        "idempotency_key": f"chaos-{RUN}-{i}",
        "max_attempts": 10,
    }
    for _ in range(120):
        try:
            response = http.post("/execute_function", json=body)
            if response.status_code == 201:
                return response.json()["task_id"]
        except httpx.HTTPError:
            pass
        time.sleep(0.5)  # the gateway or Redis is restarting: try again, same key
    raise AssertionError(f"task {i} could not be submitted for a minute")


RUN = uuid.uuid4().hex[:8]


def test_tasks_survive_random_pod_deletions(client: Client) -> None:
    rng = random.Random(RUN)
    slow = client.register(lambda i: (time.sleep(0.2), i)[1], name="chaos")
    targets = ["gateway", "dispatcher", "redis"] + (["worker"] * 3 if mode() != "local" else [])
    stop = threading.Event()
    deleted: list[str] = []

    def chaos() -> None:
        while not stop.wait(rng.uniform(4, 8)):
            candidates = pods(rng.choice(targets))
            if candidates:
                name = rng.choice(candidates)["metadata"]["name"]
                kubectl("delete", "pod", name, "--wait=false", check=False)
                deleted.append(name)

    thread = threading.Thread(target=chaos, daemon=True)
    thread.start()
    task_ids: dict[str, int] = {}
    with httpx.Client(base_url=URL, timeout=30) as http:
        try:
            for i in range(600):
                task_ids[submit(http, slow.id, i)] = i
        finally:
            stop.set()
            thread.join()
        views = {}
        deadline = time.monotonic() + 600
        while len(views) < len(task_ids) and time.monotonic() < deadline:
            pending = [t for t in task_ids if t not in views]
            try:
                for start in range(0, len(pending), 500):
                    answer = http.post(
                        "/v1/tasks/wait",
                        json={"task_ids": pending[start : start + 500], "wait": 20},
                    )
                    for view in answer.json()["tasks"]:
                        if view["status"] in ("COMPLETED", "FAILED"):
                            views[view["task_id"]] = view
            except (httpx.HTTPError, ValueError):
                time.sleep(1)
    completed = sum(1 for t, v in views.items() if v["status"] == "COMPLETED")
    failed = sum(1 for v in views.values() if v["status"] == "FAILED")
    lost = len(task_ids) - len(views)
    requeued = sum(v["attempt"] - 1 for v in views.values())
    print(
        f"\nchaos report: pods deleted {len(deleted)} ({', '.join(deleted)})\n"
        f"submitted {len(task_ids)}, completed {completed}, failed {failed}, lost {lost}, "
        f"repeated executions (re-queued attempts) {requeued}"
    )
    assert lost == 0 and failed == 0
    from faas.client import unwrap

    assert all(unwrap(views[t]) == i for t, i in task_ids.items())
