"""Request-scoped access to what `create_app` built, and the optional API-key check."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from gateway.completions import CompletionHub
from gateway.service import TaskService
from gateway.settings import GatewaySettings


def get_service(request: Request) -> TaskService:
    return request.app.state.service


def get_hub(request: Request) -> CompletionHub:
    return request.app.state.hub


def get_settings(request: Request) -> GatewaySettings:
    return request.app.state.settings


def require_api_key(request: Request) -> None:
    settings: GatewaySettings = request.app.state.settings
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value()
    given = request.headers.get("x-api-key") or ""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        given = auth[7:]
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(status_code=401, detail="missing or wrong API key")


Service = Annotated[TaskService, Depends(get_service)]
