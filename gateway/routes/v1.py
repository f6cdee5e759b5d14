"""Extensions under /v1: functions, synchronous calls, batches, rich task views."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from common.errors import TaskNotFound
from common.models import TaskRecord, new_id
from gateway import binary, logs
from gateway.deps import service as get_service
from gateway.deps import tenant as get_tenant
from gateway.routes import FastJSON, FastRoute, binary_form
from gateway.schemas import (
    BatchCreated,
    CallOptions,
    CancelTasks,
    ErrorBody,
    ExecuteBatch,
    ExecuteFunction,
    FunctionRegistered,
    FunctionView,
    RegisterFunctionV1,
    TaskList,
    TaskLogs,
    TaskView,
    WaitForTasks,
)
from gateway.views import function_view, task_view

router = APIRouter(prefix="/v1", tags=["v1"], route_class=FastRoute)
_ERRORS = {400: {"model": ErrorBody}, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}}
_BINARY_ERRORS = {**_ERRORS, 200: binary.RESPONSE_DOC, 201: binary.RESPONSE_DOC}
_WAIT = Query(0, ge=0, description="seconds to wait for the task to end")


@router.post("/functions", status_code=201, response_model=FunctionRegistered,
             responses=_ERRORS)  # fmt: skip
async def register_function(body: RegisterFunctionV1, request: Request) -> FastJSON:
    """Register a function with what it needs beyond the worker image: pip
    `requirements` and `py_modules` (zip files), and its `sources` for tracebacks;
    `result_ttl_s` and `expire_after_read` for its tasks that set none of their own.
    The answer warns about modules the function refers to that workers may lack."""
    service = get_service(request)
    sources = [(s.file, s.line, s.text) for s in body.sources]
    function_id, version, warnings = await service.register(
        body.name,
        body.payload,
        body.requirements,
        body.py_modules,
        sources,
        tenant=get_tenant(request),
        retention=body.retention,
    )
    view = {"function_id": function_id, "version": version, "warnings": warnings}
    return FastJSON(view, status_code=201)


@router.get("/functions", response_model=list[FunctionView])
async def list_functions(request: Request) -> FastJSON:
    service = get_service(request)
    functions = await service.store.list_functions(tenant=get_tenant(request).name)
    return FastJSON([function_view(f) for f in functions])


@router.get("/functions/{function_id}", response_model=FunctionView, responses=_ERRORS)
async def get_function(function_id: str, request: Request) -> FastJSON:
    service = get_service(request)
    return FastJSON(
        function_view(await service.get_function(function_id, tenant=get_tenant(request)))
    )


@router.delete("/functions/{function_id}", status_code=204, responses=_ERRORS)
async def delete_function(function_id: str, request: Request) -> Response:
    """Forget a function; tasks already queued for it may still run."""
    service = get_service(request)
    tenant = get_tenant(request)
    record = await service.get_function(function_id, tenant=tenant)
    await service.store.delete_function(record.function_id, tenant=tenant.name)
    return Response(status_code=204)


@router.post("/tasks", status_code=201, response_model=TaskView, responses=_BINARY_ERRORS,
             openapi_extra=binary.SUBMIT_DOC)  # fmt: skip
async def submit_task(body: ExecuteFunction, request: Request, wait: float = _WAIT) -> Response:
    """Queue one call; with `wait`, answer when it ended: a synchronous call in one request.
    The body may instead be the raw args pickle (`application/octet-stream`), the other
    fields then query parameters; with `accept: application/octet-stream` the answer
    is the raw result pickle, the task's fields in `X-Faas-*` headers."""
    record = await _submit_and_wait(request, body, body.payload, wait)
    return _task_answer(request, record, status_code=201)


@binary_form(submit_task)
async def submit_task_binary(request: Request) -> Response:
    call = binary.call_options(request)
    record = await _submit_and_wait(request, call, await request.body(), call.wait)
    return _task_answer(request, record, status_code=201)


async def _submit_and_wait(
    request: Request, call: CallOptions, payload: str | bytes, wait: float
) -> TaskRecord:
    service, tenant = get_service(request), get_tenant(request)
    task_id = new_id()
    with service.hub.watch([task_id]) as watch:  # before submitting: the end cannot be missed
        accepted = await service.submit_call(call, payload, tenant=tenant, task_id=task_id)
        wait_s = service.clamp_wait(wait)
        if wait_s <= 0 and accepted.queued is not None and not watch.event.is_set():
            return accepted.queued  # not ended yet: reading it back would tell nothing more
        # An idempotency key may have returned an older task: that one is read first.
        fresh = watch if accepted.task_id == task_id else None
        (record,) = await service.wait_many([accepted.task_id], wait_s, tenant=tenant,
                                            watch=fresh)  # fmt: skip
    if record is None:
        raise TaskNotFound(accepted.task_id)
    return record


def _task_answer(request: Request, record: TaskRecord, *, status_code: int = 200) -> Response:
    """The task as JSON, or in binary form if the client accepts it."""
    if binary.wants_binary(request):
        return binary.task_response(record, status_code=status_code)
    return FastJSON(task_view(record), status_code=status_code)


@router.post("/tasks/batch", status_code=201, response_model=BatchCreated, responses=_ERRORS)
async def submit_batch(body: ExecuteBatch, request: Request) -> FastJSON:
    """Queue many calls of one function in one atomic step."""
    service = get_service(request)
    task_ids = await service.submit(
        body.function_id,
        body.payloads,
        deadline_s=body.deadline_s,
        max_attempts=body.max_attempts,
        tenant=get_tenant(request),
        retention=body.retention,
    )
    return FastJSON({"task_ids": task_ids}, status_code=201)


@router.get("/tasks/{task_id}", response_model=TaskView, responses=_BINARY_ERRORS)
async def get_task(task_id: str, request: Request, wait: float = _WAIT) -> Response:
    """Everything about a task: status, result, attempts, timestamps, worker, error.
    With `accept: application/octet-stream`, the raw result pickle and `X-Faas-*` headers."""
    service = get_service(request)
    record = await service.wait(task_id, service.clamp_wait(wait), tenant=get_tenant(request))
    return _task_answer(request, record)


@router.get("/tasks/{task_id}/logs", response_model=TaskLogs, responses=_ERRORS)
async def get_task_logs(
    task_id: str,
    request: Request,
    follow: bool = Query(False, description="stream server-sent events until the task ends"),
) -> Response:
    """What the task printed (stdout and stderr), each attempt after an
    `--- attempt N ---` line. With `follow`, a `text/event-stream`: `log` events
    (a JSON string of new output) while it runs, then one `end` event."""
    service = get_service(request)
    tenant = get_tenant(request)
    record = await service.get(task_id, tenant=tenant, with_result=False)  # 404: not yours
    if follow:
        headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        stream = logs.follow(service, record, tenant)
        return StreamingResponse(stream, media_type="text/event-stream", headers=headers)
    text = logs.decode(await service.store.read_logs(record.task_id))
    return FastJSON(logs.logs_view(record, text))


@router.post("/tasks/wait", response_model=TaskList, responses=_ERRORS)
async def wait_for_tasks(body: WaitForTasks, request: Request) -> FastJSON:
    """The tasks once all ended, or as they are after `wait` seconds. Unknown ids are 404."""
    service = get_service(request)
    records = await service.wait_many(
        body.task_ids, body.wait, tenant=get_tenant(request), any_ended=body.any
    )
    for task_id, record in zip(body.task_ids, records, strict=True):
        if record is None:
            raise TaskNotFound(task_id)
    return FastJSON({"tasks": [task_view(r) for r in records if r is not None]})


@router.delete("/tasks/{task_id}", response_model=TaskView, responses=_ERRORS)
async def cancel_task(task_id: str, request: Request) -> FastJSON:
    """Cancel a task: a WAITING or QUEUED one never starts, a RUNNING one is killed. Answers the
    task afterwards: CANCELLED, or the end it already had (cancelling it changes nothing)."""
    service = get_service(request)
    (record,) = await service.cancel([task_id], tenant=get_tenant(request))
    return FastJSON(task_view(record))


@router.post("/tasks/cancel", response_model=TaskList, responses=_ERRORS)
async def cancel_tasks(body: CancelTasks, request: Request) -> FastJSON:
    """Cancel many tasks; answers them afterwards, once each. An unknown id is a 404
    and then nothing is cancelled."""
    service = get_service(request)
    records = await service.cancel(body.task_ids, tenant=get_tenant(request))
    return FastJSON({"tasks": [task_view(r) for r in records]})
