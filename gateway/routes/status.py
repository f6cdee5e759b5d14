"""Under /v1 too: what is queued, running and done, the workers, and function names."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from common.errors import FunctionNotFound
from common.models import TaskStatus
from gateway import status
from gateway.deps import service as get_service
from gateway.deps import tenant as get_tenant
from gateway.routes import FastJSON, FastRoute
from gateway.schemas import ErrorBody, NameView, StatsView, TaskPage, WorkersView
from gateway.views import task_view

router = APIRouter(prefix="/v1", tags=["status"], route_class=FastRoute)
_ERRORS = {400: {"model": ErrorBody}, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}}
_STATUS = Query(None, alias="status", description="only tasks with this status")
_LIMIT = Query(50, ge=1, le=1000)


@router.get("/tasks", response_model=TaskPage, responses=_ERRORS)
async def list_tasks(
    request: Request,
    status_: TaskStatus | None = _STATUS,
    function_id: str | None = None,
    limit: int = _LIMIT,
    cursor: str | None = None,
) -> FastJSON:
    """Tasks newest first, optionally of one status or function, a page at a time.
    A page may come back short (with a cursor) when a filter matches rarely."""
    service = get_service(request)
    records, after = await status.list_tasks(
        service.store, tenant=get_tenant(request).name, status=status_,
        function_id=function_id, limit=limit, cursor=cursor,
    )  # fmt: skip
    return FastJSON({"tasks": [task_view(r) for r in records], "next_cursor": after})


@router.get("/workers", response_model=WorkersView)
async def list_workers(request: Request) -> FastJSON:
    """The workers the active dispatcher knows, as of its last heartbeat (about 1 s)."""
    view = await status.dispatcher_view(get_service(request).store)
    return FastJSON({k: view[k] for k in ("dispatcher", "mode", "workers")})


@router.get("/stats", response_model=StatsView)
async def get_stats(request: Request) -> FastJSON:
    """Queue depth, running tasks, capacity, and tasks ended per minute (last hour)."""
    return FastJSON(await status.stats(get_service(request).store))


@router.get("/names/{name:path}", response_model=NameView, responses=_ERRORS)
async def resolve_name(name: str, request: Request) -> FastJSON:
    """The function a name calls (its latest registration) and its earlier versions."""
    store = get_service(request).store
    versions = await store.function_versions(name, tenant=get_tenant(request).name)
    if not versions:
        raise FunctionNotFound(f"named {name!r}")
    view = {"name": name, "function_id": versions[-1], "version": len(versions)}
    return FastJSON({**view, "versions": versions})
