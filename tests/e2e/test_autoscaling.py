"""The controller on a real cluster: a burst scales workers from min to max and
back after the window; a force-deleted busy worker's tasks restart elsewhere at
once. Needs pull or push mode with the controller (hack/deploy.sh pull)."""

from __future__ import annotations

import json
import time

import pytest

from faas import Client
from tests.e2e.conftest import RELEASE, eventually, kubectl, mode, replicas


@pytest.fixture(scope="module")
def pool() -> dict:
    if mode() == "local":
        pytest.skip("local mode has no worker pods to scale")
    return json.loads(kubectl("get", "workerpool", f"{RELEASE}-worker", "-o", "json"))["spec"]


def test_a_burst_scales_workers_up_to_max_and_back(client: Client, pool: dict) -> None:
    deployment = pool["deployment"]
    assert eventually(lambda: replicas(deployment) == pool["minReplicas"], 180), (
        "not at min before the burst"
    )
    sleeper = client.register(lambda: time.sleep(2), name="burst")
    started = time.monotonic()
    tasks = sleeper.submit_many([((), {})] * 500)
    timeline = []

    def at_max() -> bool:
        timeline.append((round(time.monotonic() - started, 1), replicas(deployment)))
        return timeline[-1][1] == pool["maxReplicas"]

    assert eventually(at_max, 60, every_s=0.5), f"never reached max: {timeline}"
    reaction = next(t for t, r in timeline if r > pool["minReplicas"])
    for task in tasks:
        task.result(timeout=600)

    def back_at_min() -> bool:
        timeline.append((round(time.monotonic() - started, 1), replicas(deployment)))
        return timeline[-1][1] == pool["minReplicas"]

    assert eventually(back_at_min, pool.get("scaleDownStabilizationSeconds", 60) + 120, every_s=2)
    print(f"\nscale-up reaction {reaction} s; replica timeline (s, replicas): {timeline}")


def test_a_force_deleted_busy_worker_has_its_task_running_elsewhere_quickly(
    client: Client, pool: dict
) -> None:
    task = client.register(lambda: time.sleep(20), name="busy").submit()
    assert eventually(lambda: task.info()["status"] == "RUNNING", 60, every_s=0.2)
    victim = task.info()["worker_id"]
    deleted = time.time()
    kubectl("delete", "pod", victim, "--grace-period=0", "--force", "--wait=false")
    assert eventually(
        lambda: task.info()["attempt"] == 2 and task.info()["status"] == "RUNNING", 30, every_s=0.1
    )
    elapsed = task.info()["started_at_ms"] / 1000 - deleted
    print(f"\ntask of deleted pod {victim} running elsewhere after {elapsed:.2f} s")
    assert elapsed < 3.0
