"""The real operator: Kopf with our registry, against KMock's Kubernetes emulator
(an in-memory API server over HTTP, with list, watch and patch), a real Redis
queue behind it. Checks what only a running operator shows: login, watching,
the scaling loop, the scale patch, the status patch, a pod's DELETED event
reaching the dispatcher's lost-worker list, that no WorkerPool gets a finalizer
(or keeps the one an older controller put on it), and that the pool keeps its
bounds while Redis cannot be read."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import kmock
import kopf
import pytest

from common.store import Store
from controller.handlers import build_registry
from controller.logic import LEGACY_FINALIZER
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


def seed(
    k: kmock.KubernetesEmulator,
    scale: dict[str, int],
    patches: list[Any],
    *,
    max_replicas: int = 10,
    pool_finalizers: list[str] | None = None,
    pods: dict[str, dict[str, Any]] | None = None,
    reads: list[float] | None = None,
) -> None:
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
        "metadata": {"name": "pool", "uid": "pool-uid", "generation": 1, **meta, **({"finalizers": pool_finalizers} if pool_finalizers else {})},
        "spec": {"deployment": "faas-worker", "minReplicas": 1, "maxReplicas": max_replicas, "targetTasksPerWorker": 8, "scaleDownStabilizationSeconds": 60},
    }  # fmt: skip
    for name, pod in (
        pods if pods is not None else {"faas-worker-abc": {"phase": "Running"}}
    ).items():
        k.objects["v1/pods", NS, name] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "uid": f"uid-{name}", "labels": {"app.kubernetes.io/component": "worker", "pod-template-hash": "7d9f8"}, "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "faas-worker-7d9f8", "uid": "rs-uid"}], **meta},
            "status": pod,
        }  # fmt: skip
    scale_path = f"/apis/apps/v1/namespaces/{NS}/deployments/faas-worker/scale"

    def patch_scale(request: Any) -> dict[str, Any]:
        patches.append(request.data)
        scale["replicas"] = request.data["spec"]["replicas"]
        return {"kind": "Scale", "spec": dict(scale)}

    def get_scale(_request: Any) -> dict[str, Any]:
        if reads is not None:
            reads.append(time.monotonic())  # one per reconcile pass
        return {"kind": "Scale", "spec": dict(scale)}

    k[f"get {scale_path}"] << get_scale
    k[f"patch {scale_path}"] << patch_scale


async def until(predicate: Callable[[], Any], timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


@contextlib.asynccontextmanager
async def operator_against(
    emulator: kmock.KubernetesEmulator, settings: ControllerSettings
) -> AsyncIterator[None]:
    """Run the real operator (our registry) against the emulator until the block ends."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as kubeconfig:
        json.dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": str(emulator.url)}}],
            "users": [{"name": "emulator", "user": {"token": "test"}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator", "namespace": NS}}],
        }, kubeconfig)  # fmt: skip
    os.environ["KUBECONFIG"] = kubeconfig.name
    stop = asyncio.Event()
    operator = asyncio.create_task(
        kopf.operator(
            registry=build_registry(settings), standalone=True, namespaces=[NS], stop_flag=stop
        )
    )
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(operator, 20)
        os.unlink(kubeconfig.name)


async def get_pool(emulator: kmock.KubernetesEmulator) -> dict[str, Any]:
    url = f"{emulator.url}/apis/faas.dev/v1alpha1/namespaces/{NS}/workerpools/pool"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return await response.json()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_while_redis_is_unreadable_the_pool_keeps_its_bounds_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis refuses connections; the pool runs 5 pods and its maxReplicas was lowered
    to 3; a worker pod waits for a node. The pool still goes down to 3 (no further),
    never up; its status says the queue cannot be read and that pods are unschedulable.
    And the finalizer an older controller (a Kopf timer) put on it is removed."""

    async def scenario() -> None:
        monkeypatch.setenv("KUBECONFIG", "")  # replaced by operator_against; restored after
        emulator = kmock.KubernetesEmulator()
        scale, patches, reads = {"replicas": 5}, [], []
        pending = {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient cpu."}],
        }  # fmt: skip
        async with kmock.Server(emulator):
            seed(
                emulator, scale, patches, max_replicas=3, pool_finalizers=[LEGACY_FINALIZER],
                pods={"faas-worker-7d9f8-run": {"phase": "Running"}, "faas-worker-7d9f8-wait": pending},
                reads=reads,
            )  # fmt: skip
            settings = ControllerSettings(
                redis_url=f"redis://127.0.0.1:{closed_port()}/0",
                namespace=NS,
                reconcile_interval_s=0.3,
            )
            async with operator_against(emulator, settings):

                async def conditions() -> dict[str, dict[str, Any]] | None:
                    status = (await get_pool(emulator)).get("status") or {}
                    found = {c["type"]: c for c in status.get("conditions", [])}
                    return found if "ScalingActive" in found else None

                found = await until(conditions, 15)
                assert patches and patches[0] == {"spec": {"replicas": 3}}
                assert found["ScalingActive"]["status"] == "False"
                assert found["ScalingActive"]["reason"] == "QueueUnreadable"
                assert "cannot be read" in found["ScalingActive"]["message"]
                assert found["WorkersSchedulable"]["status"] == "False"
                assert "Insufficient cpu" in found["WorkersSchedulable"]["message"]

                async def finalizer_gone() -> bool:
                    return not (await get_pool(emulator))["metadata"].get("finalizers")

                await until(finalizer_gone, 10)
                # Several more passes: still 3, never up without the queue depth
                patched, seen = len(patches), len(reads)

                async def three_more_passes() -> bool:
                    return len(reads) >= seen + 3

                await until(three_more_passes, 10)
                assert scale["replicas"] == 3 and len(patches) == patched

    asyncio.run(scenario())


def test_the_operator_scales_the_pool_and_reports_a_deleted_pod(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        monkeypatch.setenv("KUBECONFIG", "")  # replaced by operator_against; restored after
        emulator = kmock.KubernetesEmulator()
        scale, patches = {"replicas": 1}, []
        async with kmock.Server(emulator):
            seed(emulator, scale, patches)
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
            try:
                async with operator_against(emulator, settings):
                    # Then 40 queued tasks at 8 per worker scale the Deployment to 5, at once
                    async def scaled() -> bool:
                        return bool(patches)

                    await until(scaled, 15)
                    assert patches[0] == {"spec": {"replicas": 5}}

                    # And the WorkerPool's status tells why
                    async def status() -> dict[str, Any] | None:
                        current = (await get_pool(emulator)).get("status", {})
                        return current if current.get("desiredReplicas") else None

                    pool_status = await until(status, 10)
                    assert (pool_status["desiredReplicas"], pool_status["queued"]) == (5, 40)
                    conditions = {c["type"]: c for c in pool_status["conditions"]}
                    assert conditions["ScalingActive"]["status"] == "True"
                    assert conditions["WorkersSchedulable"]["status"] == "True"
                    # And the pool carries no finalizer: deleting it never waits for the
                    # controller (helm uninstall deletes both at once)
                    assert not (await get_pool(emulator))["metadata"].get("finalizers")

                    # When a worker pod is deleted, the dispatcher is told at once
                    pod_url = f"{emulator.url}/api/v1/namespaces/{NS}/pods/faas-worker-abc"
                    async with aiohttp.ClientSession() as http, http.delete(pod_url) as response:
                        assert response.status == 200

                    async def reported() -> list[bytes]:
                        return await store.redis.lrange(store.keys.lost_workers, 0, -1)

                    (report,) = await until(reported, 10)
                    assert report.decode().startswith("faas-worker-abc ")
                    assert not (await get_pool(emulator))["metadata"].get("finalizers")
            finally:
                await store.close()

    asyncio.run(scenario())
