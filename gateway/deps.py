"""Request-scoped access to what `create_app` built.

Routes take `request: Request` and call `service(request)` rather than declaring a
FastAPI dependency: dependency resolution costs about half a millisecond per request
on these machines, as much as the rest of a call."""

from __future__ import annotations

from fastapi import Request

from common.tenants import DEFAULT_TENANT, Tenant
from gateway.auth import TENANT_SCOPE_KEY
from gateway.service import TaskService

_DEFAULT = Tenant(DEFAULT_TENANT)


def service(request: Request) -> TaskService:
    return request.app.state.service


def tenant(request: Request) -> Tenant:
    """The caller's tenant, as the API-key check resolved it; `default` without keys."""
    return request.scope.get(TENANT_SCOPE_KEY, _DEFAULT)
