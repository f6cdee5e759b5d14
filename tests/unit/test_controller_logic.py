"""The scaler's rules when the queue cannot be read, and the conditions it writes.
A real Store client pointed at a port nothing listens on (Redis down), and the
scale subresource emulated over HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import httpx
import pytest

from common.store import Store
from controller.kube import KubeApi
from controller.logic import Runtime, on_pod_event, reconcile_pool

SPEC = {"deployment": "faas-worker", "minReplicas": 1, "maxReplicas": 4, "targetTasksPerWorker": 8}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def reconcile_with_redis_down(
    replicas: int, *, previous: dict[str, Any] | None = None, pods: list[dict] = ()
) -> tuple[dict[str, Any], list[int], list[tuple[str, str]]]:
    """(status, replicas patched, events) of one pass with Redis unreachable."""
    patched: list[int] = []
    events: list[tuple[str, str]] = []

    def api(request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            patched.append(json.loads(request.content)["spec"]["replicas"])
        return httpx.Response(
            200, json={"spec": {"replicas": patched[-1] if patched else replicas}}
        )

    async def scenario() -> dict[str, Any]:
        store = Store.from_url(f"redis://127.0.0.1:{closed_port()}/0", prefix="u")
        kube = KubeApi(httpx.AsyncClient(transport=httpx.MockTransport(api), base_url="https://k"))
        runtime = Runtime(
            store=store, kube=kube, post_event=lambda _b, t, r, _m: events.append((t, r))
        )
        try:
            for pod in pods:
                await on_pod_event(runtime, event_type="ADDED", pod=pod)
            body = {"status": {"conditions": previous["conditions"]}} if previous else {}
            return await reconcile_pool(
                runtime, namespace="faas", name="pool", spec=SPEC, body=body, generation=2
            )
        finally:
            await kube.close()
            await store.close()

    return asyncio.run(scenario()), patched, events


@pytest.mark.parametrize(
    ("replicas", "expected"),
    [(7, 4), (4, 4), (2, 2), (0, 1)],
    ids=["above-max-comes-down-to-max", "at-max-stays", "inside-stays", "below-min-goes-to-min"],
)
def test_without_the_queue_the_pool_is_only_clamped_to_its_bounds(
    replicas: int, expected: int
) -> None:
    status, patched, _ = reconcile_with_redis_down(replicas)
    assert status["desiredReplicas"] == expected
    assert patched == ([expected] if expected != replicas else [])
    scaling = status["conditions"][0]
    assert (scaling["type"], scaling["status"], scaling["reason"]) == (
        "ScalingActive",
        "False",
        "QueueUnreadable",
    )
    assert "cannot be read" in scaling["message"]
    assert status["queued"] is None and status["running"] is None  # unknown, not 0


def test_the_unreadable_queue_is_announced_once_not_at_every_pass() -> None:
    first, _, events = reconcile_with_redis_down(2)
    assert ("Warning", "QueueUnreadable") in events
    second, _, events = reconcile_with_redis_down(2, previous=first)
    assert ("Warning", "QueueUnreadable") not in events
    # And the condition keeps the time it became False
    assert (
        second["conditions"][0]["lastTransitionTime"]
        == first["conditions"][0]["lastTransitionTime"]
    )


def worker_pod(name: str, *, deployment: str = "faas-worker", unschedulable: bool) -> dict:
    status: dict[str, Any] = {"phase": "Pending" if unschedulable else "Running"}
    if unschedulable:
        status["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient cpu.",
            }
        ]
    return {
        "metadata": {
            "name": name,
            "labels": {"pod-template-hash": "abc12"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": f"{deployment}-abc12"}],
        },
        "status": status,
    }


def test_unschedulable_worker_pods_show_in_a_condition() -> None:
    status, _, _ = reconcile_with_redis_down(
        2,
        pods=[
            worker_pod("faas-worker-abc12-a", unschedulable=False),
            worker_pod("faas-worker-abc12-b", unschedulable=True),
            worker_pod("other-abc12-c", deployment="other", unschedulable=True),
        ],
    )
    schedulable = {c["type"]: c for c in status["conditions"]}["WorkersSchedulable"]
    assert (schedulable["status"], schedulable["reason"]) == ("False", "Unschedulable")
    assert "1 worker pod(s)" in schedulable["message"]
    assert (
        "faas-worker-abc12-b" in schedulable["message"]
        and "Insufficient cpu" in (schedulable["message"])
    )


def test_schedulable_pods_give_a_true_condition() -> None:
    status, _, _ = reconcile_with_redis_down(
        2, pods=[worker_pod("faas-worker-abc12-a", unschedulable=False)]
    )
    schedulable = {c["type"]: c for c in status["conditions"]}["WorkersSchedulable"]
    assert schedulable["status"] == "True"
