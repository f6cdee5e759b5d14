"""Request-scoped access to what `create_app` built.

Routes take `request: Request` and call `service(request)` rather than declaring a
FastAPI dependency: dependency resolution costs about half a millisecond per request
on these machines, as much as the rest of a call."""

from __future__ import annotations

from fastapi import Request

from gateway.service import TaskService


def service(request: Request) -> TaskService:
    return request.app.state.service
