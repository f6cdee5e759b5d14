"""What the handlers do, with their dependencies passed in (the store, the
Kubernetes API, an event poster, a clock), so tests drive them with a real Redis
and an emulated API instead of a cluster."""

from __future__ import annotations

import asyncio
import datetime
import inspect
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from common.errors import StoreUnavailable
from common.store import Store
from controller import metrics
from controller.kube import KubeApi, KubeError
from controller.pods import PodFate, PodView, classify, view
from controller.scaling import PoolSpec, Stabilizer, within_bounds

logger = logging.getLogger(__name__)

# (object body, type, reason, message); may return an awaitable (an API call)
PostEvent = Callable[[Any, str, str, str], Awaitable[None] | None]
_REPORTED_MEMORY = 10_000
# The finalizer Kopf put on WorkerPools while the scaler was a Kopf timer (timers
# require one). Nothing needs it: the controller removes it where it finds it.
LEGACY_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"


@dataclass
class Runtime:
    store: Store
    kube: KubeApi
    post_event: PostEvent
    clock: Callable[[], float] = time.monotonic
    stabilizers: dict[str, Stabilizer] = field(default_factory=dict)
    reported: OrderedDict[tuple[str, str], None] = field(default_factory=OrderedDict)
    pools: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """The latest body of every WorkerPool, from the watch."""
    pods: dict[str, PodView] = field(default_factory=dict)
    """Every worker pod (by name), from the watch: whose it is, whether it can be scheduled."""


async def _post(runtime: Runtime, body: Any, type_: str, reason: str, message: str) -> None:
    outcome = runtime.post_event(body, type_, reason, message)
    if inspect.isawaitable(outcome):
        await outcome


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def on_pod_event(runtime: Runtime, *, event_type: str | None, pod: dict[str, Any]) -> bool:
    """Report a lost worker pod to the dispatcher; True if it was reported now.
    Idempotent: a pod is reported once per reason here, and the dispatcher ignores
    reports about workers it no longer knows or that registered again since."""
    name = (pod.get("metadata") or {}).get("name", "")
    if event_type == "DELETED":
        runtime.pods.pop(name, None)
    elif name:
        runtime.pods[name] = view(pod)
    verdict = classify(event_type, pod)
    if verdict.fate is not PodFate.LOST:
        return False
    metadata = pod.get("metadata") or {}
    worker_id = metadata.get("name", "")
    key = (metadata.get("uid") or worker_id, verdict.reason)
    if not worker_id or key in runtime.reported:
        return False
    await runtime.store.report_lost_worker(worker_id)  # raises: not remembered, so retried
    runtime.reported[key] = None
    metrics.LOST_REPORTS.inc()
    if len(runtime.reported) > _REPORTED_MEMORY:
        runtime.reported.popitem(last=False)
    logger.warning("worker pod %s lost (%s): reported to the dispatcher", worker_id, verdict.reason)
    await _post(
        runtime, pod, "Warning", "WorkerLost", f"{verdict.reason}; its running tasks were re-queued"
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
    """Scale the pool's Deployment toward the queue; returns the status to patch.

    When the queue cannot be read (Redis down, restarting, refusing us), the pool
    still keeps its Deployment within [minReplicas, maxReplicas] (a lowered
    maxReplicas applies at once) but never scales up, and scales down no further
    than the bounds: without the queue depth, pods may be busy. The condition
    ScalingActive=False/QueueUnreadable says so. Raises KubeError when the API
    refuses (e.g. the Deployment does not exist)."""
    pool = PoolSpec.from_spec(spec)
    deployment = spec["deployment"]
    current = await runtime.kube.get_scale(namespace, deployment)
    stabilizer = runtime.stabilizers.setdefault(f"{namespace}/{name}", Stabilizer())
    try:
        queued, running = await runtime.store.queue_depth()
    except (StoreUnavailable, RedisError) as exc:
        metrics.QUEUE_READS_FAILED.inc()
        queued = running = None
        desired = within_bounds(current, pool)
        bounds = f"[{pool.min_replicas}, {pool.max_replicas}]"
        load = f"the queue cannot be read ({exc}); only the bounds {bounds} are enforced"
    else:
        desired = stabilizer.recommend(
            now=runtime.clock(), queued=queued, running=running, spec=pool
        )
        load = f"{queued} queued, {running} running, target {pool.target_tasks_per_worker} per pod"
    metrics.REPLICAS.labels(name).set(current)  # pools are few: one series each
    metrics.DESIRED.labels(name).set(desired)
    status: dict[str, Any] = {
        "replicas": current,
        "desiredReplicas": desired,
        "queued": queued,  # None removes it from the status (merge patch): unknown
        "running": running,
        "observedGeneration": generation,
    }
    if desired != current:
        await runtime.kube.set_scale(namespace, deployment, desired)
        direction = "up" if desired > current else "down"
        message = f"scaled {deployment} {direction} from {current} to {desired} pods: {load}"
        await _post(runtime, body, "Normal", "Scaled", message)
        logger.info("%s/%s: %s", namespace, name, message)
        status.update(replicas=desired, lastScaleTime=_now_iso())
    else:
        message = f"{current} pods: {load}"
    previous = _previous_conditions(body)
    if queued is None:
        scaling = ("False", "QueueUnreadable", message)
        if (previous.get("ScalingActive") or {}).get("reason") != "QueueUnreadable":
            await _post(runtime, body, "Warning", "QueueUnreadable", message)
    elif desired != current:
        scaling = ("True", "Scaled", message)
    else:
        scaling = ("True", "Steady", message)
    stuck = sorted(
        (pod_name, pod.unschedulable)
        for pod_name, pod in runtime.pods.items()
        if pod.deployment == deployment and pod.unschedulable
    )
    if stuck:
        schedulable = (
            "False",
            "Unschedulable",
            f"{len(stuck)} worker pod(s) cannot be scheduled, so fewer pods are ready than "
            f"desired; e.g. {stuck[0][0]}: {stuck[0][1]}",
        )
    else:
        schedulable = ("True", "Scheduled", "no worker pod is waiting for a node")
    status["conditions"] = [
        _condition("ScalingActive", *scaling, previous),
        _condition("WorkersSchedulable", *schedulable, previous),
    ]
    return status


def _previous_conditions(body: Any) -> dict[str, dict[str, Any]]:
    try:
        conditions = (body.get("status") or {}).get("conditions") or []
    except AttributeError:
        return {}
    return {c.get("type"): c for c in conditions if isinstance(c, dict)}


def _condition(
    type_: str, status: str, reason: str, message: str, previous: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """A condition whose lastTransitionTime changes only when its status does."""
    before = previous.get(type_) or {}
    since = before.get("lastTransitionTime") if before.get("status") == status else None
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or _now_iso(),
    }


def _api_error_status(exc: KubeError, body: Any) -> dict[str, Any]:
    previous = _previous_conditions(body)
    condition = _condition("ScalingActive", "False", "ApiError", str(exc), previous)
    kept = [c for t, c in previous.items() if t != "ScalingActive"]
    return {"conditions": [condition, *kept]}


async def reconcile_all(runtime: Runtime) -> None:
    """One pass over every known WorkerPool: scale it and patch its status. One
    pool's failure is logged and never stops the others (or the next pass)."""
    for (namespace, name), body in list(runtime.pools.items()):
        spec = body.get("spec") or {}
        try:
            try:
                status = await reconcile_pool(
                    runtime, namespace=namespace, name=name, spec=spec, body=body,
                    generation=(body.get("metadata") or {}).get("generation"),
                )  # fmt: skip
            except KubeError as exc:
                logger.warning(
                    "%s/%s: cannot scale %s: %s", namespace, name, spec.get("deployment"), exc
                )
                status = _api_error_status(exc, body)
            await runtime.kube.patch_status(namespace, name, status)
        except KubeError as exc:
            if exc.status_code != 404:  # a pool deleted a moment ago: its DELETED event follows
                logger.warning("%s/%s: cannot write the status: %s", namespace, name, exc)
        except Exception:
            logger.exception("%s/%s: reconcile failed", namespace, name)


async def scaling_loop(runtime: Runtime, interval_s: float) -> None:
    """Reconcile every pool each interval until cancelled (the operator's cleanup).

    Not a Kopf timer on purpose: Kopf puts a finalizer on every object a timer or
    daemon runs for, so a WorkerPool could not be deleted once the controller was
    gone (a `helm uninstall` removes both at once and then waits forever)."""
    while True:
        started = runtime.clock()
        await reconcile_all(runtime)
        await asyncio.sleep(max(0.0, interval_s - (runtime.clock() - started)))


def observe_pool(runtime: Runtime, event_type: str | None, body: dict[str, Any]) -> bool:
    """Remember (or forget) a WorkerPool from its watch event; True if it carries
    the finalizer an older controller put on it, which the caller should remove."""
    metadata = body.get("metadata") or {}
    key = (metadata.get("namespace", ""), metadata.get("name", ""))
    if event_type == "DELETED":
        runtime.pools.pop(key, None)
        runtime.stabilizers.pop("/".join(key), None)
        return False
    runtime.pools[key] = body
    return LEGACY_FINALIZER in (metadata.get("finalizers") or [])
