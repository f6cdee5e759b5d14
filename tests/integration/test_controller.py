"""The controller's handlers with real parts: a real Redis queue and a real
dispatcher with workers; the Kubernetes API is emulated over HTTP (the scale
subresource), recording the exact requests the controller sends."""

from __future__ import annotations

import asyncio
import json
import pickle
import re
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.errors import StoreUnavailable
from common.models import DispatchMode
from common.store import Store
from controller.kube import KubeApi, KubeError
from controller.logic import Runtime, on_pod_event, reconcile_pool
from tests.conftest import task_running, wait_result

SCALE = re.compile(r"/apis/apps/v1/namespaces/(?P<ns>[^/]+)/deployments/(?P<name>[^/]+)/scale")


class EmulatedApi:
    """Deployments' scale subresource, as the API server answers it."""

    def __init__(self, replicas: dict[str, int]) -> None:
        self.replicas = replicas
        self.requests: list[tuple[str, str, str | None, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.requests.append(
            (request.method, request.url.path, request.headers.get("content-type"), body)
        )
        match = SCALE.fullmatch(request.url.path)
        if match is None or match["name"] not in self.replicas:
            return httpx.Response(404, json={"kind": "Status", "reason": "NotFound"})
        if request.method == "PATCH":
            self.replicas[match["name"]] = body["spec"]["replicas"]
        return httpx.Response(
            200, json={"kind": "Scale", "spec": {"replicas": self.replicas[match["name"]]}}
        )

    def patches(self) -> list[tuple[str, str | None, Any]]:
        return [
            (path, ctype, body) for method, path, ctype, body in self.requests if method == "PATCH"
        ]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


SPEC = {
    "deployment": "faas-worker",
    "minReplicas": 1,
    "maxReplicas": 10,
    "targetTasksPerWorker": 8,
    "scaleDownStabilizationSeconds": 60,
}


async def queue_tasks(store: Store, count: int) -> None:
    function_id = str(uuid.uuid4())
    await store.register_function(function_id, "f", pickle.dumps(len))
    if count:
        await store.submit(
            function_id,
            [(str(uuid.uuid4()), b"") for _ in range(count)],
            deadline_s=60,
            max_attempts=1,
        )


def test_reconcile_scales_up_at_once_and_down_after_the_window(redis_url: str) -> None:
    async def scenario() -> None:
        store = Store.from_url(redis_url, prefix=f"c{uuid.uuid4().hex[:6]}")
        api = EmulatedApi({"faas-worker": 1})
        events: list[tuple[str, str, str]] = []
        clock = Clock()
        runtime = Runtime(
            store=store,
            kube=KubeApi(
                httpx.AsyncClient(transport=httpx.MockTransport(api), base_url="https://k8s")
            ),
            post_event=lambda _body, type_, reason, message: events.append(
                (type_, reason, message)
            ),
            clock=clock,
        )
        try:
            await store.ensure_group()
            # Given 40 queued tasks: 40 / 8 per worker = 5 pods, at once
            await queue_tasks(store, 40)
            status = await reconcile_pool(
                runtime, namespace="faas", name="pool", spec=SPEC, body={}, generation=1
            )
            assert api.patches() == [
                (
                    "/apis/apps/v1/namespaces/faas/deployments/faas-worker/scale",
                    "application/merge-patch+json",
                    {"spec": {"replicas": 5}},
                )
            ]
            assert (
                status["replicas"],
                status["desiredReplicas"],
                status["queued"],
                status["running"],
            ) == (5, 5, 40, 0)
            assert status["conditions"][0]["reason"] == "Scaled" and "lastScaleTime" in status
            assert events[0][:2] == ("Normal", "Scaled") and "from 1 to 5" in events[0][2]
            # When nothing changes, nothing is patched
            clock.now += 2
            status = await reconcile_pool(
                runtime, namespace="faas", name="pool", spec=SPEC, body={}, generation=1
            )
            assert len(api.patches()) == 1 and status["conditions"][0]["reason"] == "Steady"
            # When the queue empties, the pool holds 5 pods for the window, then goes to 1
            await store.redis.delete(store.keys.queue)
            await store.ensure_group()
            clock.now += 30
            await reconcile_pool(
                runtime, namespace="faas", name="pool", spec=SPEC, body={}, generation=1
            )
            assert len(api.patches()) == 1
            clock.now += 31
            status = await reconcile_pool(
                runtime, namespace="faas", name="pool", spec=SPEC, body={}, generation=1
            )
            assert api.patches()[-1][2] == {"spec": {"replicas": 1}}
            assert status["replicas"] == 1
        finally:
            await runtime.kube.close()
            await store.close()

    asyncio.run(scenario())


def test_a_missing_deployment_is_a_clear_api_error(redis_url: str) -> None:
    async def scenario() -> None:
        store = Store.from_url(redis_url, prefix=f"c{uuid.uuid4().hex[:6]}")
        kube = KubeApi(
            httpx.AsyncClient(
                transport=httpx.MockTransport(EmulatedApi({})), base_url="https://k8s"
            )
        )
        runtime = Runtime(store=store, kube=kube, post_event=lambda *_: None)
        try:
            with pytest.raises(KubeError) as caught:
                await reconcile_pool(
                    runtime, namespace="faas", name="pool", spec=SPEC, body={}, generation=1
                )
            assert caught.value.status_code == 404
        finally:
            await kube.close()
            await store.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "mode", [DispatchMode.PULL, DispatchMode.PUSH], ids=lambda m: f"{m.value}-mode"
)
def test_a_deleted_worker_pod_has_its_tasks_requeued_faster_than_heartbeats(
    tmp_path: Path, mode: DispatchMode
) -> None:
    # A 20 s liveness timeout: only the controller's report can explain a fast recovery.
    with task_running(tmp_path, mode, 2, FAAS_LIVENESS_TIMEOUT_S="20") as (platform, http, first):
        task_id = first["task_id"]
        frozen = platform.worker_ids[first["worker_id"]]
        frozen.signal(signal.SIGSTOP)  # the pod is gone; its process no longer answers
        pod = {
            "metadata": {"name": first["worker_id"], "uid": "pod-uid-1"},
            "status": {"phase": "Running"},
        }
        events: list[tuple[str, str]] = []

        async def deliver(times: int) -> list[bool]:
            store = Store.from_url(platform.redis_url, prefix="faas")
            runtime = Runtime(
                store=store, kube=None, post_event=lambda _b, t, r, _m: events.append((t, r))
            )  # type: ignore[arg-type]
            try:
                return [
                    await on_pod_event(runtime, event_type="DELETED", pod=pod) for _ in range(times)
                ]
            finally:
                await store.close()

        try:
            reported_ms = time.time() * 1000
            # The same DELETED event twice: reported once
            assert asyncio.run(deliver(2)) == [True, False]
            assert events == [("Warning", "WorkerLost")]
            result = wait_result(http, task_id, timeout_s=15)
            view = http.get(f"/v1/tasks/{task_id}").json()
            assert result["status"] == "COMPLETED" and view["attempt"] == 2
            assert view["worker_id"] != first["worker_id"]
            reaction_s = (view["started_at_ms"] - reported_ms) / 1000
            print(f"[{mode}] task running elsewhere {reaction_s:.3f} s after the pod event")
            assert reaction_s < 1.0
        finally:
            frozen.signal(signal.SIGCONT)


def test_a_report_that_failed_is_made_again_on_the_next_try(redis_url: str) -> None:
    async def scenario() -> None:
        pod = {"metadata": {"name": "faas-worker-x", "uid": "u-x"}, "status": {"phase": "Failed"}}
        down = Store.from_url("redis://127.0.0.1:1/0", prefix="r")
        up = Store.from_url(redis_url, prefix=f"r{uuid.uuid4().hex[:6]}")
        runtime = Runtime(store=down, kube=None, post_event=lambda *_: None)  # type: ignore[arg-type]
        try:
            with pytest.raises(StoreUnavailable):
                await on_pod_event(runtime, event_type="MODIFIED", pod=pod)
            runtime.store = up  # Redis is back
            assert await on_pod_event(runtime, event_type="MODIFIED", pod=pod) is True
            (report,) = await up.redis.lrange(up.keys.lost_workers, 0, -1)
            assert report.decode().startswith("faas-worker-x ")
        finally:
            await down.close()
            await up.close()

    asyncio.run(scenario())
