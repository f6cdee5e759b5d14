"""Request-scoped access to what `create_app` built, and the optional API-key check.

Routes take `request: Request` and call `service(request)` rather than declaring a
FastAPI dependency: dependency resolution costs about half a millisecond per request
on these machines, as much as the rest of a call."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request

from gateway.service import TaskService
from gateway.settings import GatewaySettings


def service(request: Request) -> TaskService:
    return request.app.state.service


def require_api_key(request: Request) -> None:
    """Installed only when an API key is configured."""
    settings: GatewaySettings = request.app.state.settings
    assert settings.api_key is not None
    expected = settings.api_key.get_secret_value()
    given = request.headers.get("x-api-key") or ""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        given = auth[7:]
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(status_code=401, detail="missing or wrong API key")
