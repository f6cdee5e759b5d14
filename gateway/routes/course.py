"""The course-compatible API: register, execute, status, result."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from gateway.deps import service as get_service
from gateway.deps import tenant as get_tenant
from gateway.routes import FastJSON, FastRoute
from gateway.schemas import (
    ErrorBody,
    ExecuteFunction,
    FunctionCreated,
    RegisterFunction,
    ResultView,
    StatusView,
    TaskCreated,
)
from gateway.views import result_view, status_view

router = APIRouter(tags=["core"], route_class=FastRoute)
_ERRORS = {400: {"model": ErrorBody}, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}}


@router.post("/register_function", status_code=201, response_model=FunctionCreated,
             responses=_ERRORS)  # fmt: skip
async def register_function(body: RegisterFunction, request: Request) -> FastJSON:
    """Register a function: `payload` is base64 text of its pickle (dill or cloudpickle)."""
    service = get_service(request)
    function_id, _, _ = await service.register(body.name, body.payload, tenant=get_tenant(request))
    return FastJSON({"function_id": function_id}, status_code=201)


@router.post("/execute_function", status_code=201, response_model=TaskCreated,
             responses=_ERRORS)  # fmt: skip
async def execute_function(body: ExecuteFunction, request: Request) -> FastJSON:
    """Queue one call: `payload` is base64 text of the pickled `((args...), {kwargs})`."""
    service = get_service(request)
    accepted = await service.submit_call(body, body.payload, tenant=get_tenant(request))
    return FastJSON({"task_id": accepted.task_id}, status_code=201)


@router.get("/status/{task_id}", response_model=StatusView, responses=_ERRORS)
async def get_status(task_id: str, request: Request) -> FastJSON:
    service = get_service(request)
    record = await service.get(task_id, tenant=get_tenant(request), with_result=False)
    return FastJSON(status_view(record))


@router.get("/result/{task_id}", response_model=ResultView, responses=_ERRORS)
async def get_result(
    task_id: str,
    request: Request,
    wait: float = Query(0, ge=0, description="seconds to wait for the task to end"),
) -> FastJSON:
    """Status and, once the task ended, its result. With `wait`, answers the moment
    the task ends (or after `wait` seconds with the current status)."""
    service = get_service(request)
    record = await service.wait(task_id, service.clamp_wait(wait), tenant=get_tenant(request))
    return FastJSON(result_view(record))
