"""`create_app(settings)`: the FastAPI application, its lifespan and error mapping."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError

from common.errors import (
    FaasError,
    FunctionNotFound,
    IdempotencyConflict,
    InvalidId,
    InvalidPayload,
    QuotaExceeded,
    StoreFull,
    StoreUnavailable,
    TaskNotFound,
)
from common.memory import keep_freed_memory
from common.store import Store
from gateway.auth import ApiKeyMiddleware, api_keys
from gateway.completions import CompletionHub
from gateway.hot import HotRoutes
from gateway.limits import BodyLimitMiddleware
from gateway.metrics import MetricsMiddleware, metrics
from gateway.routes import FastJSON, course, health, status, v1
from gateway.service import TaskService
from gateway.settings import GatewaySettings
from gateway.ui import add_pages

logger = logging.getLogger(__name__)

_STATUS = {
    InvalidPayload: 400,
    InvalidId: 400,
    FunctionNotFound: 404,
    TaskNotFound: 404,
    IdempotencyConflict: 409,
    QuotaExceeded: 429,
    StoreUnavailable: 503,
}
RETRY_AFTER_S = 1
"""What a 503 tells clients to wait before retrying: Redis back, or memory freed."""


_NO_OPENTELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI).parameters
    else {}
)
"""FastAPI 0.165 asks OpenTelemetry on every request whether a provider was set up
(about 4% of a submit's CPU); the gateway's metrics are its own (gateway/metrics.py)."""
HOT_PATHS = ("/execute_function", "/v1/tasks")
"""The single submits: POSTed there, served by `HotRoutes` rather than FastAPI."""


def create_app(
    settings: GatewaySettings | None = None, *, hot_paths: tuple[str, ...] = HOT_PATHS
) -> FastAPI:
    """The gateway; `hot_paths=()` leaves every route to FastAPI (to compare the two)."""
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keep_freed_memory()  # in each server process: payloads reuse the heap
        store = Store.from_url(
            settings.redis_url,
            prefix=settings.key_prefix,
            result_ttl_s=settings.result_ttl_s,
            max_connections=settings.redis_max_connections,
            pool_timeout_s=settings.redis_pool_timeout_s,
        )
        hub = CompletionHub(store)
        await hub.start()
        app.state.settings = settings
        app.state.hub = hub
        app.state.service = service = TaskService(settings, store, hub)
        await service.checker.start()
        try:
            yield
        finally:
            await service.close()
            await hub.stop()
            await store.close()

    app = FastAPI(
        title="faas",
        summary="Run Python functions on a pool of workers.",
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=FastJSON,
        docs_url=None,  # served by gateway.ui from local assets instead of a CDN
        redoc_url=None,
        **_NO_OPENTELEMETRY,
    )
    # Middleware added later runs earlier: HotRoutes inside the body limit and metrics.
    hot_routes = [*course.router.routes, *v1.router.routes]
    app.add_middleware(HotRoutes, fastapi=app, routes=hot_routes, paths=hot_paths)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    if settings.metrics_enabled:
        app.add_middleware(MetricsMiddleware)
        app.add_route("/metrics", metrics, include_in_schema=False)
    keys = api_keys(settings)
    if keys:  # added last: runs first, before any body is read
        app.add_middleware(ApiKeyMiddleware, keys=keys)
    app.include_router(course.router)
    app.include_router(v1.router)
    app.include_router(status.router)
    app.include_router(health.router)
    add_pages(app)

    @app.exception_handler(FaasError)
    async def faas_error(_request: Request, exc: FaasError) -> FastJSON:
        status = next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 500)
        if status >= 500:
            logger.warning("%s: %s", type(exc).__name__, exc)
        if isinstance(exc, QuotaExceeded):
            headers = {"Retry-After": str(RETRY_AFTER_S)}
            return FastJSON({"detail": str(exc)}, status_code=status, headers=headers)
        if isinstance(exc, StoreUnavailable):
            what = "full (out of memory)" if isinstance(exc, StoreFull) else "unavailable"
            detail = f"the task store is {what}; retry later"
            headers = {"Retry-After": str(RETRY_AFTER_S)}
            return FastJSON({"detail": f"{detail} ({exc})"}, status_code=503, headers=headers)
        return FastJSON({"detail": str(exc)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> FastJSON:
        return FastJSON({"detail": _describe(exc)}, status_code=422)

    return app


def _describe(exc: RequestValidationError) -> str:
    """One readable line per problem, e.g. `body.payload: Field required`."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()))
        lines.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(lines) or "invalid request"
