"""The submit routes served by `HotRoutes` answer exactly as FastAPI answers them:
same status, body and content type for valid and malformed requests alike."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from common.errors import FunctionNotFound
from common.models import new_id
from gateway import app as gateway_app
from gateway.settings import GatewaySettings

FID = new_id()
GOOD = {"function_id": FID, "payload": "gASVBAAAAAAAAAApfZSGlC4="}  # ((), {})
JSON = {"content-type": "application/json"}


class _Service:
    """Stands in for TaskService: every submit reaches it and is told the function is
    unknown, so a request that passes validation ends as a 404 on both paths."""

    hub = SimpleNamespace(watch=lambda ids: contextlib.nullcontext(None))
    calls = 0

    async def submit_call(self, body: Any, payload: Any, **_: Any) -> Any:
        _Service.calls += 1
        raise FunctionNotFound(body.function_id)

    async def decode(self, texts: Any) -> Any:  # pragma: no cover - not reached
        raise AssertionError


def _app(hot: bool) -> Any:
    settings = GatewaySettings(metrics_enabled=True)
    app = gateway_app.create_app(settings, hot_paths=gateway_app.HOT_PATHS if hot else ())
    app.state.service = _Service()
    return app


CASES: list[tuple[str, str, bytes | None, dict[str, str]]] = [
    ("/execute_function", "", None, JSON),  # no body
    ("/execute_function", "", b"{}", JSON),
    ("/execute_function", "", b"[]", JSON),
    ("/execute_function", "", b"null", JSON),
    ("/execute_function", "", b'"text"', JSON),
    ("/execute_function", "", b'{"function_id":', JSON),  # not JSON
    ("/execute_function", "", b'{"function_id": 1, "payload": 2}', JSON),
    ("/execute_function", "", b'{"function_id": "x", "payload": "y", "extra": 1}', JSON),
    ("/execute_function", "", b'{"function_id": "x", "payload": "y", "deadline_s": "3"}', JSON),
    ("/execute_function", "", b'{"function_id": "x", "payload": "y", "deadline_s": 0}', JSON),
    ("/execute_function", "", b'{"function_id": "x", "payload": "y", "max_attempts": true}', JSON),
    ("/execute_function", "", b'{"function_id": "x", "payload": "y", "depends_on": "z"}', JSON),
    ("/execute_function", "wait=-1", b'{"function_id": "x", "payload": "y"}', JSON),
    ("/execute_function", "", b'{"function_id": "x", "payload": "y"}', {}),  # no content type
    ("/execute_function", "", b'{"function_id": "x", "payload": "y"}',
     {"content-type": "text/plain"}),
    ("/execute_function", "", b'{"function_id": "x", "payload": "y"}',
     {"content-type": "application/vnd.faas+json"}),
    ("/execute_function", "", b'{"function_id": "x", "payload": "y"}',
     {"content-type": "Application/JSON; charset=utf-8"}),
    ("/execute_function", "", b'{"function_id": "x", "payload": "y"}',
     {"content-type": "application/json/extra"}),
    ("/execute_function", "", b"\x80\x04N.", {"content-type": "application/octet-stream"}),
    ("/v1/tasks", "", None, JSON),
    ("/v1/tasks", "wait=-1", None, JSON),  # both a query and a body error
    ("/v1/tasks", "wait=abc", b'{"function_id": 1}', JSON),
    ("/v1/tasks", "wait=1&wait=-1", b'{"function_id": "x", "payload": "y"}', JSON),
    ("/v1/tasks", "wait=", b'{"function_id": "x", "payload": "y"}', JSON),
    ("/v1/tasks", "wait=inf", b'{"function_id": "x", "payload": "y"}', JSON),
    ("/v1/tasks", "wait=2.5&other=1", b'{"function_id": "x", "payload": "y"}', JSON),
    ("/v1/tasks", "", b"not json", JSON),
    ("/v1/tasks", "", b"\x80\x04N.", {"content-type": "application/octet-stream"}),
    ("/v1/tasks", "deadline_s=abc", b"\x80\x04N.", {"content-type": "application/octet-stream"}),
    ("/v1/tasks", f"function_id={FID}&wait=-2", b"\x80\x04N.",
     {"content-type": "application/octet-stream"}),
]  # fmt: skip


async def _answers(hot: bool) -> list[tuple[int, str, bytes]]:
    transport = httpx.ASGITransport(app=_app(hot))
    answers = []
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        for path, query, body, headers in [*CASES, ("/execute_function", "", None, {})]:
            url = f"{path}?{query}" if query else path
            response = await client.post(url, content=body, headers=headers)
            answers.append((response.status_code, response.headers["content-type"],
                            response.content))  # fmt: skip
        answers.append(await _good(client))
    return answers


async def _good(client: httpx.AsyncClient) -> tuple[int, str, bytes]:
    response = await client.post("/v1/tasks?wait=0", json=GOOD)
    return response.status_code, response.headers["content-type"], response.content


def test_hot_routes_answer_as_fastapi_does() -> None:
    _Service.calls = 0
    fastapi = asyncio.run(_answers(hot=False))
    reached = _Service.calls
    hot = asyncio.run(_answers(hot=True))
    assert _Service.calls == 2 * reached > 0  # the same requests passed validation
    for case, theirs, ours in zip([*CASES, "no body", "good"], fastapi, hot, strict=True):
        assert ours == theirs, case
    statuses = {status for status, _, _ in hot}
    assert {404, 422} <= statuses, statuses  # both outcomes were exercised


@pytest.mark.parametrize("hot", [True, False])
def test_metrics_label_hot_requests_by_their_route(hot: bool) -> None:
    labels = {"route": "/v1/tasks", "method": "POST", "status": "404"}

    def count() -> float:
        name = "faas_http_request_duration_seconds_count"
        return REGISTRY.get_sample_value(name, labels) or 0.0

    async def once() -> None:
        transport = httpx.ASGITransport(app=_app(hot))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            await _good(client)

    before = count()
    asyncio.run(once())
    assert count() == before + 1
