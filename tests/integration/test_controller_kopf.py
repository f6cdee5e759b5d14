"""The real operator: Kopf with our registry, against KMock's Kubernetes emulator
(an in-memory API server over HTTP, with list, watch and patch), a real Redis
queue behind it. Checks what only a running operator shows: login, watching,
the timer, the scale patch, the status patch, and a pod's DELETED event reaching
the dispatcher's lost-worker list."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import kmock
import kopf
import pytest

from common.store import Store
from controller.handlers import build_registry
from controller.settings import ControllerSettings

NS = "faas"


def resource(
    kind: str, verbs: list[str], *, namespaced: bool = True, sub: tuple[str, ...] = ()
) -> dict[str, Any]:
    return dict(
        namespaced=namespaced,
        kind=kind,
        singular=kind.lower(),
        verbs=verbs,
        shortnames=[],
        categories=[],
        subresources=list(sub),
    )


def seed(k: kmock.KubernetesEmulator, scale: dict[str, int], patches: list[Any]) -> None:
    k.resources["v1/namespaces"] = resource("Namespace", ["list", "watch", "get"], namespaced=False)
    k.resources["v1/events"] = resource("Event", ["create"])
    k.resources["v1/pods"] = resource("Pod", ["list", "watch", "get", "delete"])
    k.resources["apps/v1/deployments"] = resource("Deployment", ["get", "patch"], sub=("scale",))
    k.resources["faas.dev/v1alpha1/workerpools"] = resource(
        "WorkerPool", ["list", "watch", "patch", "get"], sub=("status",)
    )
    meta = {"namespace": NS, "resourceVersion": "1"}
    k.objects["apps/v1/deployments", NS, "faas-worker"] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "faas-worker", **meta},
        "spec": {"replicas": 1},
    }
    k.objects["faas.dev/v1alpha1/workerpools", NS, "pool"] = {
        "apiVersion": "faas.dev/v1alpha1", "kind": "WorkerPool",
        "metadata": {"name": "pool", "uid": "pool-uid", "generation": 1, **meta},
        "spec": {"deployment": "faas-worker", "minReplicas": 1, "maxReplicas": 10, "targetTasksPerWorker": 8, "scaleDownStabilizationSeconds": 60},
    }  # fmt: skip
    k.objects["v1/pods", NS, "faas-worker-abc"] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "faas-worker-abc", "uid": "pod-uid", "labels": {"app.kubernetes.io/component": "worker"}, **meta},
        "status": {"phase": "Running"},
    }  # fmt: skip
    scale_path = f"/apis/apps/v1/namespaces/{NS}/deployments/faas-worker/scale"

    def patch_scale(request: Any) -> dict[str, Any]:
        patches.append(request.data)
        scale["replicas"] = request.data["spec"]["replicas"]
        return {"kind": "Scale", "spec": dict(scale)}

    k[f"get {scale_path}"] << (lambda _request: {"kind": "Scale", "spec": dict(scale)})
    k[f"patch {scale_path}"] << patch_scale


async def until(predicate: Callable[[], Any], timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_the_operator_scales_the_pool_and_reports_a_deleted_pod(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        emulator = kmock.KubernetesEmulator()
        scale, patches = {"replicas": 1}, []
        async with kmock.Server(emulator):
            seed(emulator, scale, patches)
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as kubeconfig:
                json.dump({
                    "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
                    "clusters": [{"name": "emulator", "cluster": {"server": str(emulator.url)}}],
                    "users": [{"name": "emulator", "user": {"token": "test"}}],
                    "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator", "namespace": NS}}],
                }, kubeconfig)  # fmt: skip
            monkeypatch.setenv("KUBECONFIG", kubeconfig.name)
            prefix = f"k{uuid.uuid4().hex[:6]}"
            store = Store.from_url(redis_url, prefix=prefix)
            await store.ensure_group()
            function_id = str(uuid.uuid4())
            await store.register_function(function_id, "f", pickle.dumps(len))
            await store.submit(
                function_id,
                [(str(uuid.uuid4()), b"") for _ in range(40)],
                deadline_s=60,
                max_attempts=1,
            )
            settings = ControllerSettings(
                redis_url=redis_url, key_prefix=prefix, namespace=NS, reconcile_interval_s=0.5
            )
            stop = asyncio.Event()
            operator = asyncio.create_task(
                kopf.operator(
                    registry=build_registry(settings),
                    standalone=True,
                    namespaces=[NS],
                    stop_flag=stop,
                )
            )
            try:
                # Then 40 queued tasks at 8 per worker scale the Deployment to 5, at once
                async def scaled() -> bool:
                    return bool(patches)

                await until(scaled, 15)
                assert patches[0] == {"spec": {"replicas": 5}}

                # And the WorkerPool's status tells why
                async with aiohttp.ClientSession() as http:

                    async def status() -> dict[str, Any] | None:
                        url = f"{emulator.url}/apis/faas.dev/v1alpha1/namespaces/{NS}/workerpools/pool"
                        async with http.get(url) as response:
                            current = (await response.json()).get("status", {})
                        return current if current.get("desiredReplicas") else None

                    pool_status = await until(status, 10)
                    assert (pool_status["desiredReplicas"], pool_status["queued"]) == (5, 40)
                    assert pool_status["conditions"][0]["type"] == "ScalingActive"

                    # When a worker pod is deleted, the dispatcher is told at once
                    async with http.delete(
                        f"{emulator.url}/api/v1/namespaces/{NS}/pods/faas-worker-abc"
                    ) as response:
                        assert response.status == 200

                async def reported() -> list[bytes]:
                    return await store.redis.lrange(store.keys.lost_workers, 0, -1)

                (report,) = await until(reported, 10)
                assert report.decode().startswith("faas-worker-abc ")
            finally:
                stop.set()
                await asyncio.wait_for(operator, 20)
                await store.close()
                os.unlink(kubeconfig.name)

    asyncio.run(scenario())
