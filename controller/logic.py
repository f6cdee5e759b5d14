"""What the handlers do, with their dependencies passed in (the store, the
Kubernetes API, an event poster, a clock), so tests drive them with a real Redis
and an emulated API instead of a cluster."""

from __future__ import annotations

import datetime
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from common.store import Store
from controller.kube import KubeApi
from controller.pods import PodFate, classify
from controller.scaling import PoolSpec, Stabilizer

logger = logging.getLogger(__name__)

PostEvent = Callable[[Any, str, str, str], None]  # (object body, type, reason, message)
_REPORTED_MEMORY = 10_000


@dataclass
class Runtime:
    store: Store
    kube: KubeApi
    post_event: PostEvent
    clock: Callable[[], float] = time.monotonic
    stabilizers: dict[str, Stabilizer] = field(default_factory=dict)
    reported: OrderedDict[tuple[str, str], None] = field(default_factory=OrderedDict)


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def on_pod_event(runtime: Runtime, *, event_type: str | None, pod: dict[str, Any]) -> bool:
    """Report a lost worker pod to the dispatcher; True if it was reported now.
    Idempotent: a pod is reported once per reason here, and the dispatcher ignores
    reports about workers it no longer knows or that registered again since."""
    verdict = classify(event_type, pod)
    if verdict.fate is not PodFate.LOST:
        return False
    metadata = pod.get("metadata") or {}
    worker_id = metadata.get("name", "")
    key = (metadata.get("uid") or worker_id, verdict.reason)
    if not worker_id or key in runtime.reported:
        return False
    runtime.reported[key] = None
    if len(runtime.reported) > _REPORTED_MEMORY:
        runtime.reported.popitem(last=False)
    await runtime.store.report_lost_worker(worker_id)
    logger.warning("worker pod %s lost (%s): reported to the dispatcher", worker_id, verdict.reason)
    runtime.post_event(
        pod, "Warning", "WorkerLost", f"{verdict.reason}; its running tasks were re-queued"
    )
    return True


async def reconcile_pool(
    runtime: Runtime,
    *,
    namespace: str,
    name: str,
    spec: dict[str, Any],
    body: Any,
    generation: int | None,
) -> dict[str, Any]:
    """Scale the pool's Deployment toward the queue; returns the status to patch."""
    pool = PoolSpec.from_spec(spec)
    deployment = spec["deployment"]
    queued, running = await runtime.store.queue_depth()
    stabilizer = runtime.stabilizers.setdefault(f"{namespace}/{name}", Stabilizer())
    desired = stabilizer.recommend(now=runtime.clock(), queued=queued, running=running, spec=pool)
    current = await runtime.kube.get_scale(namespace, deployment)
    status: dict[str, Any] = {
        "replicas": current,
        "desiredReplicas": desired,
        "queued": queued,
        "running": running,
        "observedGeneration": generation,
    }
    load = f"{queued} queued, {running} running, target {pool.target_tasks_per_worker} per pod"
    if desired != current:
        await runtime.kube.set_scale(namespace, deployment, desired)
        direction = "up" if desired > current else "down"
        message = f"scaled {deployment} {direction} from {current} to {desired} pods: {load}"
        runtime.post_event(body, "Normal", "Scaled", message)
        logger.info("%s/%s: %s", namespace, name, message)
        status.update(replicas=desired, lastScaleTime=_now_iso())
        condition = ("True", "Scaled", message)
    else:
        condition = ("True", "Steady", f"{current} pods for {load}")
    status["conditions"] = [
        {
            "type": "ScalingActive",
            "status": condition[0],
            "reason": condition[1],
            "message": condition[2],
            "lastTransitionTime": _now_iso(),
        }
    ]
    return status
