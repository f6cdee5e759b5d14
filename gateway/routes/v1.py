"""Extensions under /v1: functions, synchronous calls, batches, rich task views."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response

from common.errors import TaskNotFound
from common.models import new_id
from gateway.deps import service as get_service
from gateway.routes import FastJSON, FastRoute
from gateway.schemas import (
    BatchCreated,
    ErrorBody,
    ExecuteBatch,
    ExecuteFunction,
    FunctionRegistered,
    FunctionView,
    RegisterFunctionV1,
    TaskList,
    TaskView,
    WaitForTasks,
)
from gateway.views import function_view, task_view

router = APIRouter(prefix="/v1", tags=["v1"], route_class=FastRoute)
_ERRORS = {400: {"model": ErrorBody}, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}}
_WAIT = Query(0, ge=0, description="seconds to wait for the task to end")


@router.post("/functions", status_code=201, response_model=FunctionRegistered,
             responses=_ERRORS)  # fmt: skip
async def register_function(body: RegisterFunctionV1, request: Request) -> FastJSON:
    """Register a function with what it needs beyond the worker image: pip
    `requirements` and `py_modules` (zip files), and its `sources` for tracebacks.
    The answer warns about modules the function refers to that workers may lack."""
    service = get_service(request)
    sources = [(s.file, s.line, s.text) for s in body.sources]
    function_id, warnings = await service.register(
        body.name, body.payload, body.requirements, body.py_modules, sources
    )
    return FastJSON({"function_id": function_id, "warnings": warnings}, status_code=201)


@router.get("/functions", response_model=list[FunctionView])
async def list_functions(request: Request) -> FastJSON:
    service = get_service(request)
    return FastJSON([function_view(f) for f in await service.store.list_functions()])


@router.get("/functions/{function_id}", response_model=FunctionView, responses=_ERRORS)
async def get_function(function_id: str, request: Request) -> FastJSON:
    service = get_service(request)
    return FastJSON(function_view(await service.get_function(function_id)))


@router.delete("/functions/{function_id}", status_code=204, responses=_ERRORS)
async def delete_function(function_id: str, request: Request) -> Response:
    """Forget a function; tasks already queued for it may still run."""
    service = get_service(request)
    record = await service.get_function(function_id)
    await service.store.delete_function(record.function_id)
    return Response(status_code=204)


@router.post("/tasks", status_code=201, response_model=TaskView, responses=_ERRORS)
async def submit_task(body: ExecuteFunction, request: Request, wait: float = _WAIT) -> FastJSON:
    """Queue one call; with `wait`, answer when it ended: a synchronous call in one request."""
    service = get_service(request)
    task_id = new_id()
    with service.hub.watch([task_id]) as watch:  # before submitting: the end cannot be missed
        accepted = await service.submit_call(body, task_id=task_id)
        # An idempotency key may have returned an older task: that one is read first.
        fresh = watch if accepted == task_id else None
        (record,) = await service.wait_many([accepted], service.clamp_wait(wait), watch=fresh)
    if record is None:
        raise TaskNotFound(accepted)
    return FastJSON(task_view(record), status_code=201)


@router.post("/tasks/batch", status_code=201, response_model=BatchCreated, responses=_ERRORS)
async def submit_batch(body: ExecuteBatch, request: Request) -> FastJSON:
    """Queue many calls of one function in one atomic step."""
    service = get_service(request)
    task_ids = await service.submit(
        body.function_id, body.payloads, deadline_s=body.deadline_s, max_attempts=body.max_attempts
    )
    return FastJSON({"task_ids": task_ids}, status_code=201)


@router.get("/tasks/{task_id}", response_model=TaskView, responses=_ERRORS)
async def get_task(task_id: str, request: Request, wait: float = _WAIT) -> FastJSON:
    """Everything about a task: status, result, attempts, timestamps, worker, error."""
    service = get_service(request)
    return FastJSON(task_view(await service.wait(task_id, service.clamp_wait(wait))))


@router.post("/tasks/wait", response_model=TaskList, responses=_ERRORS)
async def wait_for_tasks(body: WaitForTasks, request: Request) -> FastJSON:
    """The tasks once all ended, or as they are after `wait` seconds. Unknown ids are 404."""
    service = get_service(request)
    records = await service.wait_many(body.task_ids, body.wait)
    for task_id, record in zip(body.task_ids, records, strict=True):
        if record is None:
            raise TaskNotFound(task_id)
    return FastJSON({"tasks": [task_view(r) for r in records if r is not None]})
