"""Kopf handlers, registered on an explicit registry built from the settings
(no import-time globals). They only translate between Kopf and `logic`."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from common.errors import StoreUnavailable
from common.store import Store
from controller.kube import KubeApi, KubeError
from controller.logic import Runtime, on_pod_event, reconcile_pool
from controller.settings import ControllerSettings

GROUP, VERSION, PLURAL = "faas.dev", "v1alpha1", "workerpools"


def _post_event(body: Any, type_: str, reason: str, message: str) -> None:
    kopf.event(body, type=type_, reason=reason, message=message)


def build_registry(settings: ControllerSettings) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    config = settings  # the handlers' own `settings` argument is Kopf's
    label, _, value = settings.worker_pod_selector.partition("=")

    # An explicit registry lacks the login handlers Kopf puts in its default one.
    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.posting.level = logging.INFO
        settings.watching.server_timeout = 60
        # One fixed namespace and a namespaced Role: no listing of namespaces or CRDs.
        settings.scanning.disabled = True
        info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
            settings=settings
        )
        if info is None:
            raise kopf.PermanentError("no Kubernetes credentials (service account or kubeconfig)")
        store = Store.from_url(config.redis_url, prefix=config.key_prefix)
        memo.runtime = Runtime(
            store=store, kube=KubeApi.from_connection(info), post_event=_post_event
        )

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        runtime: Runtime = memo.runtime
        await runtime.kube.close()
        await runtime.store.close()

    @kopf.on.event("", "v1", "pods", labels={label: value}, registry=registry)
    async def pod_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        try:
            await on_pod_event(memo.runtime, event_type=type, pod=dict(body))
        except StoreUnavailable as exc:
            raise kopf.TemporaryError(f"cannot report the lost worker: {exc}", delay=1) from exc

    @kopf.timer(GROUP, VERSION, PLURAL, interval=settings.reconcile_interval_s, registry=registry)
    async def reconcile(
        spec: kopf.Spec, name: str, namespace: str, body: kopf.Body, meta: kopf.Meta,
        patch: kopf.Patch, memo: kopf.Memo, **_: Any,
    ) -> None:  # fmt: skip
        try:
            status = await reconcile_pool(
                memo.runtime, namespace=namespace, name=name, spec=dict(spec), body=body,
                generation=meta.get("generation"),
            )  # fmt: skip
        except KubeError as exc:
            patch.status["conditions"] = [
                {
                    "type": "ScalingActive",
                    "status": "False",
                    "reason": "ApiError",
                    "message": str(exc),
                }
            ]
            raise kopf.TemporaryError(
                f"cannot scale {spec.get('deployment')}: {exc}", delay=5
            ) from exc
        except StoreUnavailable as exc:
            raise kopf.TemporaryError(f"cannot read the queue: {exc}", delay=2) from exc
        patch.status.update(status)

    return registry
