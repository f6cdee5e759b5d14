"""The gateway's Prometheus metrics and the middleware that times requests.

`/metrics` is served by the app itself and is open like the health checks: it
shows aggregates only (request counts and latencies per route template, tasks
submitted), never ids, payloads or results. See SECURITY.md.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_SECONDS = Histogram(
    "faas_http_request_duration_seconds",
    "Gateway request latency, by route template, method and status code",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SUBMITTED = Counter("faas_tasks_submitted_total", "Tasks accepted by the gateway")
SUBMIT_COMMITS = Counter(
    "faas_submit_commits_total",
    "Redis round trips that committed single submits (coalesced: several submits may share one)",
)


class MetricsMiddleware:
    """Times every HTTP request. The label is the matched route's template
    (`/v1/tasks/{task_id}`), never the raw path, so ids add no series; requests
    that match no route count as `unmatched`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._series: dict[tuple[str, str, str], Any] = {}  # labels() takes a lock each time

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            key = (getattr(route, "path", "unmatched"), scope["method"], str(status))
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = REQUEST_SECONDS.labels(*key)
            series.observe(time.perf_counter() - start)


async def metrics(_request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
