"""How many worker pods a WorkerPool wants: pure functions and a small state object
with an injectable clock, so the rules are tested without Kubernetes.

    desired = clamp(ceil((queued + running) / targetTasksPerWorker), min, max)

Scaling up happens at once. Scaling down goes only to the highest recommendation
seen over the stabilization window, so a burst that pauses for a moment does not
make pods flap. With minReplicas 0 and scaleToZeroAfterSeconds set, the pool keeps
one pod until the queue has been empty that long.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PoolSpec:
    min_replicas: int
    max_replicas: int
    target_tasks_per_worker: int = 8
    scale_down_stabilization_s: float = 60.0
    scale_to_zero_after_s: float | None = None

    @classmethod
    def from_spec(cls, spec: dict) -> PoolSpec:
        after = spec.get("scaleToZeroAfterSeconds")
        return cls(
            min_replicas=int(spec["minReplicas"]),
            max_replicas=int(spec["maxReplicas"]),
            target_tasks_per_worker=int(spec.get("targetTasksPerWorker", 8)),
            scale_down_stabilization_s=float(spec.get("scaleDownStabilizationSeconds", 60)),
            scale_to_zero_after_s=float(after) if after is not None else None,
        )


def desired_replicas(*, queued: int, running: int, spec: PoolSpec) -> int:
    wanted = math.ceil((queued + running) / spec.target_tasks_per_worker)
    return max(spec.min_replicas, min(wanted, spec.max_replicas))


@dataclass
class Stabilizer:
    """Remembers recent recommendations of one pool."""

    history: deque[tuple[float, int]] = field(default_factory=deque)
    idle_since: float | None = None

    def recommend(self, *, now: float, queued: int, running: int, spec: PoolSpec) -> int:
        desired = desired_replicas(queued=queued, running=running, spec=spec)
        desired = self._hold_one_until_idle_long_enough(now, desired, queued + running, spec)
        self.history.append((now, desired))
        while self.history and self.history[0][0] < now - spec.scale_down_stabilization_s:
            self.history.popleft()
        return max(replicas for _, replicas in self.history)

    def _hold_one_until_idle_long_enough(
        self, now: float, desired: int, load: int, spec: PoolSpec
    ) -> int:
        if load > 0:
            self.idle_since = None
            return desired
        if self.idle_since is None:
            self.idle_since = now
        too_soon = (
            spec.scale_to_zero_after_s is not None
            and now - self.idle_since < spec.scale_to_zero_after_s
        )
        return min(1, spec.max_replicas) if desired == 0 and too_soon else desired


def within_bounds(replicas: int, spec: PoolSpec) -> int:
    """`replicas` moved into [min, max]: all the scaler may do without the queue depth."""
    return max(spec.min_replicas, min(replicas, spec.max_replicas))
