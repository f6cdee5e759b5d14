"""HTTP routes: the course-compatible core, /v1 extensions and health checks."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute


class FastJSON(JSONResponse):
    """JSON rendered by orjson: results can be megabytes of base64 text."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class _OrjsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            # orjson's error subclasses json.JSONDecodeError: FastAPI still answers 422.
            self._json = orjson.loads(await self.body())
        return self._json


Endpoint = Callable[..., Coroutine[Any, Any, Any]]
_BINARY_FORMS: dict[Endpoint, Callable[[Request], Coroutine[Any, Any, Response]]] = {}
OCTET_STREAM = "application/octet-stream"


def sends_binary(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith(OCTET_STREAM)


def binary_form(
    json_endpoint: Endpoint,
) -> Callable[[Callable[[Request], Coroutine[Any, Any, Response]]], Any]:
    """Declare the handler that answers instead of `json_endpoint` when the request
    body is `application/octet-stream` (see gateway/binary.py): one path, two forms."""

    def register(handler: Callable[[Request], Coroutine[Any, Any, Response]]) -> Any:
        _BINARY_FORMS[json_endpoint] = handler
        return handler

    return register


def binary_form_of(
    json_endpoint: Endpoint,
) -> Callable[[Request], Coroutine[Any, Any, Response]] | None:
    return _BINARY_FORMS.get(json_endpoint)


class FastRoute(APIRoute):
    """Parses JSON bodies with orjson (stdlib json takes ~2.5 ms per MB of payload), and
    hands binary bodies to the endpoint's binary form when it has one."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            binary = _BINARY_FORMS.get(self.endpoint)
            if binary is not None and sends_binary(request):
                return await binary(request)
            return await handler(_OrjsonRequest(request.scope, request.receive))

        return route
