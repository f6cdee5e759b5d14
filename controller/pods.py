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
