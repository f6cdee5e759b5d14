"""The submit routes, answered without FastAPI's per-request machinery.

`POST /execute_function` and `POST /v1/tasks` are most of a busy gateway's requests, and
FastAPI spent more CPU on each than the submit itself: matching the path against every
route, solving dependencies the endpoints do not have, parsing the content type with
`email.message`, its telemetry hooks and exit stacks (profiled: about half the
gateway's CPU per submit). `HotRoutes`, ASGI middleware inside ours (API key, metrics,
body limit), calls those endpoints itself: the same functions, their body and query
parameters validated by the same pydantic types as FastAPI would (errors with the same
locations, so the same 422 lines: tests/unit/test_gateway_hot.py compares both on
malformed requests), a binary body handed to the endpoint's binary form, errors
answered by the app's own exception handlers. Any other path or method, or an app
mounted under a root path, goes to FastAPI, where the routes stay declared for the
OpenAPI schema and /docs.
"""

from __future__ import annotations

import email.message
import functools
import inspect
import typing
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.routes import binary_form_of, sends_binary

_MISSING = object()


@dataclass(frozen=True)
class HotRoute:
    route: APIRoute  # its endpoint, and the template metrics label requests with
    body: tuple[str, TypeAdapter[Any]]  # the body parameter's name and type
    query: tuple[tuple[str, TypeAdapter[Any], Any], ...]  # (name, type, default)
    binary: Callable[[Request], Coroutine[Any, Any, Response]] | None

    @classmethod
    def of(cls, route: APIRoute) -> HotRoute:
        """Read the endpoint's signature: `request`, one pydantic body model, and query
        parameters declared with `Query(default, ...)`; anything else is refused."""
        hints = typing.get_type_hints(route.endpoint, include_extras=True)
        body: tuple[str, TypeAdapter[Any]] | None = None
        query = []
        for name, param in inspect.signature(route.endpoint).parameters.items():
            kind = hints[name]
            if kind is Request:
                continue
            if isinstance(kind, type) and issubclass(kind, BaseModel) and body is None:
                body = (name, TypeAdapter(kind))
            elif isinstance(param.default, FieldInfo):
                query.append((name, TypeAdapter(Annotated[kind, param.default]),
                              param.default.default))  # fmt: skip
            else:
                raise TypeError(f"{route.path}: parameter {name} is not served by HotRoutes")
        if body is None:
            raise TypeError(f"{route.path}: HotRoutes serves endpoints with a body model")
        return cls(route, body, tuple(query), binary_form_of(route.endpoint))

    async def answer(self, request: Request) -> Response:
        if self.binary is not None and sends_binary(request):
            return await self.binary(request)
        errors: list[Any] = []
        values: dict[str, Any] = {"request": request}
        params = request.query_params if self.query else {}
        for name, adapter, default in self.query:  # query first, as FastAPI reports them
            given = params.get(name)
            values[name] = default if given is None else _valid(adapter, given, ("query", name),
                                                                errors)  # fmt: skip
        name, adapter = self.body
        body = await _body(request)
        if body is _MISSING:
            errors.append({"type": "missing", "loc": ("body",), "msg": "Field required",
                           "input": None})  # fmt: skip
        else:
            values[name] = _valid(adapter, body, ("body",), errors)
        if errors:
            raise RequestValidationError(errors, body=None if body is _MISSING else body)
        return await self.route.endpoint(**values)


def _valid(adapter: TypeAdapter[Any], value: Any, loc: tuple[str, ...], errors: list) -> Any:
    try:
        return adapter.validate_python(value, from_attributes=True)
    except ValidationError as exc:
        errors += [{**e, "loc": loc + e["loc"]} for e in exc.errors(include_url=False)]
        return None


async def _body(request: Request) -> Any:
    """The body as FastAPI hands it to validation: missing when empty, parsed when its
    content type is JSON, else the bytes (which no model accepts)."""
    try:
        raw = await request.body()
    except Exception:  # as FastAPI answers it (a body over the limit becomes the 413)
        raise HTTPException(status_code=400, detail="There was an error parsing the body") from None
    if not raw:
        return _MISSING
    if not _is_json(request.headers.get("content-type")):
        return raw
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        error = {"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error",
                 "input": {}, "ctx": {"error": exc.msg}}  # fmt: skip
        raise RequestValidationError([error], body=exc.doc) from None


@functools.lru_cache(maxsize=64)
def _is_json(content_type: str | None) -> bool:
    """FastAPI's test (email.message's parse: a malformed type is text/plain), once
    per distinct header value."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


class HotRoutes:
    """Serves `POST` on the paths given (see the module docstring); the rest goes on."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        fastapi: FastAPI,
        routes: Sequence[BaseRoute],
        paths: tuple[str, ...],
    ) -> None:
        self.app = app
        self.fastapi = fastapi
        posts = {r.path: r for r in routes if isinstance(r, APIRoute) and "POST" in r.methods}
        self.routes = {path: HotRoute.of(posts[path]) for path in paths}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = None
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            hot = self.routes.get(scope["path"])
        if hot is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = hot.route
        scope["endpoint"] = hot.route.endpoint
        request = Request(scope, receive)
        try:
            response = await hot.answer(request)
        except Exception as exc:
            handler = _handler(self.fastapi, exc)
            if handler is None:
                raise  # to ServerErrorMiddleware: a 500, as from FastAPI
            response = await handler(request, exc)
        await response(scope, receive, send)


def _handler(app: FastAPI, exc: Exception) -> Any:
    """The app's handler for `exc`, found as Starlette's ExceptionMiddleware finds it
    (by the class's MRO; one for Exception itself is ServerErrorMiddleware's)."""
    for kind in type(exc).__mro__:
        if kind is Exception:
            return None
        if kind in app.exception_handlers:
            return app.exception_handlers[kind]
    return None
