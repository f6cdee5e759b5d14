"""Kopf handlers, registered on an explicit registry built from the settings
(no import-time globals). They only translate between Kopf and `logic`.

Kopf only watches here (event handlers, which put no finalizers on anything);
the scaling itself is one loop started at startup over the WorkerPools the watch
has seen (`logic.scaling_loop`), so deleting a WorkerPool never waits for the
controller, even when the controller is being deleted in the same breath."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from typing import Any

import kopf

from common.errors import StoreUnavailable
from common.store import Store
from controller.kube import KubeApi, KubeError
from controller.logic import LEGACY_FINALIZER, Runtime, observe_pool, on_pod_event, scaling_loop
from controller.settings import ControllerSettings

logger = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "faas.dev", "v1alpha1", "workerpools"


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
        kube = KubeApi.from_connection(info)

        async def post_event(body: Any, type_: str, reason: str, message: str) -> None:
            try:
                await kube.create_event(body, type_, reason, message)
            except KubeError as exc:  # an Event is a courtesy: never fail the work for it
                logger.info("cannot post the %s event: %s", reason, exc)

        memo.runtime = Runtime(store=store, kube=kube, post_event=post_event)
        memo.scaler = asyncio.create_task(
            scaling_loop(memo.runtime, config.reconcile_interval_s), name="faas-scaler"
        )

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        runtime: Runtime = memo.runtime
        memo.scaler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await memo.scaler
        await runtime.kube.close()
        await runtime.store.close()

    @kopf.on.event("", "v1", "pods", labels={label: value}, registry=registry)
    async def pod_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        # Kopf does not retry event handlers: retry here while Redis restarts. Past
        # that, the dispatcher's own liveness timeout notices the worker anyway.
        for delay in (0.5, 1, 2, 4, 8, 0):
            try:
                await on_pod_event(memo.runtime, event_type=type, pod=dict(body))
                return
            except StoreUnavailable as exc:
                if not delay:
                    logger.warning("cannot report lost worker %s: %s", body.metadata.name, exc)
                    return
                await asyncio.sleep(delay)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def pool_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        runtime: Runtime = memo.runtime
        raw = copy.deepcopy(dict(body))
        if observe_pool(runtime, type, raw):
            try:
                await runtime.kube.drop_finalizer(raw, LEGACY_FINALIZER)
            except KubeError as exc:  # the next status patch brings another event: retried
                logger.warning("cannot drop the old finalizer of %s: %s", body.metadata.name, exc)

    return registry
