"""What a worker pod event means for its tasks (pure, tested without Kubernetes).

A pod that is terminating gracefully is *draining*: its worker finishes what it
runs (or hands it back with BYE), so nothing is reported and nothing runs twice.
A pod gone without that chance is *lost*: deleted (including force deletion),
Failed (evicted, crashed), or whose worker container was OOM-killed. Lost workers
are reported to the dispatcher, which re-queues their tasks at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class PodFate(StrEnum):
    PENDING = "pending"
    ALIVE = "alive"
    DRAINING = "draining"
    COMPLETED = "completed"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class Verdict:
    fate: PodFate
    reason: str = ""


def classify(event_type: str | None, pod: dict[str, Any]) -> Verdict:
    status = pod.get("status") or {}
    phase = status.get("phase", "Pending")
    if event_type == "DELETED":
        if phase == "Succeeded":
            return Verdict(PodFate.COMPLETED)
        return Verdict(PodFate.LOST, "pod deleted")
    if phase == "Failed":
        return Verdict(
            PodFate.LOST, status.get("reason") or _terminated_reason(status) or "pod failed"
        )
    if phase == "Succeeded":
        return Verdict(PodFate.COMPLETED)
    oom = _terminated_reason(status)
    if oom == "OOMKilled":
        return Verdict(PodFate.LOST, "worker container OOMKilled")
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return Verdict(PodFate.DRAINING)
    if phase == "Pending":
        return Verdict(PodFate.PENDING)
    return Verdict(PodFate.ALIVE)


def _terminated_reason(status: dict[str, Any]) -> str | None:
    """Reason of a container that is terminated *now* (not a past restart)."""
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated:
            return terminated.get("reason") or "Error"
    return None


@dataclass(frozen=True, slots=True)
class PodView:
    """What the scaler needs to know about one worker pod, kept from the watch."""

    deployment: str | None
    unschedulable: str | None  # the scheduler's message while it cannot place the pod


def view(pod: dict[str, Any]) -> PodView:
    return PodView(deployment=owner_deployment(pod), unschedulable=unschedulable(pod))


def unschedulable(pod: dict[str, Any]) -> str | None:
    """The scheduler's message if the pod is Pending because no node can take it
    (condition PodScheduled=False, reason Unschedulable), else None."""
    status = pod.get("status") or {}
    if status.get("phase", "Pending") != "Pending" or (pod.get("metadata") or {}).get(
        "deletionTimestamp"
    ):
        return None
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            return condition.get("message") or "Unschedulable"
    return None


def owner_deployment(pod: dict[str, Any]) -> str | None:
    """The Deployment a pod belongs to: its owner ReplicaSet is named
    `<deployment>-<pod-template-hash>` (what kubectl relies on too)."""
    metadata = pod.get("metadata") or {}
    template_hash = (metadata.get("labels") or {}).get("pod-template-hash")
    for owner in metadata.get("ownerReferences") or []:
        if owner.get("kind") != "ReplicaSet":
            continue
        name = owner.get("name", "")
        if template_hash and name.endswith(f"-{template_hash}"):
            return name[: -len(template_hash) - 1]
        return name.rsplit("-", 1)[0] if "-" in name else None
    return None
