"""Which worker pod events mean lost tasks."""

from __future__ import annotations

import pytest

from controller.pods import PodFate, classify


def pod(
    phase: str = "Running",
    *,
    deleting: bool = False,
    terminated: str | None = None,
    reason: str | None = None,
) -> dict:
    status: dict = {"phase": phase}
    if reason:
        status["reason"] = reason
    if terminated:
        status["containerStatuses"] = [
            {"name": "worker", "state": {"terminated": {"reason": terminated}}}
        ]
    metadata: dict = {"name": "faas-worker-abc", "uid": "u1"}
    if deleting:
        metadata["deletionTimestamp"] = "2026-11-21T00:00:00Z"
    return {"metadata": metadata, "status": status}


@pytest.mark.parametrize(
    ("event", "body", "fate", "reason"),
    [
        (None, pod("Pending"), PodFate.PENDING, ""),
        ("ADDED", pod(), PodFate.ALIVE, ""),
        ("MODIFIED", pod(deleting=True), PodFate.DRAINING, ""),
        ("DELETED", pod(deleting=True), PodFate.LOST, "pod deleted"),
        ("DELETED", pod("Succeeded"), PodFate.COMPLETED, ""),
        ("MODIFIED", pod("Failed", reason="Evicted"), PodFate.LOST, "Evicted"),
        ("MODIFIED", pod("Failed", terminated="Error"), PodFate.LOST, "Error"),
        (
            "MODIFIED",
            pod("Running", terminated="OOMKilled"),
            PodFate.LOST,
            "worker container OOMKilled",
        ),
        ("MODIFIED", pod("Succeeded"), PodFate.COMPLETED, ""),
    ],
    ids=[
        "pending",
        "running",
        "terminating",
        "deleted",
        "deleted-after-success",
        "evicted",
        "failed",
        "oom",
        "completed",
    ],
)
def test_pod_events_are_classified(
    event: str | None, body: dict, fate: PodFate, reason: str
) -> None:
    verdict = classify(event, body)
    assert (verdict.fate, verdict.reason) == (fate, reason)


def test_an_unschedulable_pending_pod_is_recognized_with_its_deployment() -> None:
    from controller.pods import view

    body = pod("Pending")
    body["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "no cpu"}
    ]
    body["metadata"]["labels"] = {"pod-template-hash": "5f7c9"}
    body["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "name": "my-app-worker-5f7c9"}]
    assert view(body).unschedulable == "no cpu"
    assert view(body).deployment == "my-app-worker"
    # Pending but merely pulling its image: schedulable
    body["status"]["conditions"][0].update(status="True", reason="")
    assert view(body).unschedulable is None
