"""Request and response bodies of the REST API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.models import MAX_DEPENDENCIES, MAX_RESULT_TTL_S, ErrorKind, Retention, TaskStatus
from common.requirements import MAX_REQUIREMENTS
from common.wire import MAX_BUNDLES


class _Strict(BaseModel):
    # strict: no coercion, so `"3"` or `true` is not a number (an int is still a float).
    model_config = ConfigDict(extra="forbid", strict=True)


MAX_SOURCES_CHARS = 256 * 1024
"""Source text a registration may carry for tracebacks, all files together."""


class SourceText(_Strict):
    file: str = Field(min_length=1, max_length=4096, description="the code's file name")
    line: int = Field(ge=1, le=10**7, description="line number of the text's first line")
    text: str = Field(max_length=MAX_SOURCES_CHARS)


class RegisterFunction(_Strict):
    name: str = Field(min_length=1, max_length=200)
    payload: str = Field(description="base64 text of the pickled function")


class RetentionOptions(_Strict):
    result_ttl_s: int | None = Field(
        default=None,
        ge=1,
        le=MAX_RESULT_TTL_S,
        description="seconds an ended task (its result and output) is kept, 1 to "
        f"{MAX_RESULT_TTL_S:,} (30 days); unset: the function's, else the server's "
        "(FAAS_RESULT_TTL_S, 24 h by default)",
    )
    expire_after_read: bool | None = Field(
        default=None,
        description="once a response carried the ended task's result (GET /v1/tasks/{id}, "
        "a synchronous POST /v1/tasks, POST /v1/tasks/wait, GET /result/{id}), keep it "
        "only FAAS_EXPIRE_AFTER_READ_S more (60 s by default); unset: as the function says",
    )

    @property
    def retention(self) -> Retention:
        return Retention(self.result_ttl_s, self.expire_after_read)


class RegisterFunctionV1(RegisterFunction, RetentionOptions):
    """Retention options, if set, apply to its tasks that set none of their own."""

    requirements: list[str] = Field(
        default_factory=list,
        max_length=MAX_REQUIREMENTS,
        description="pip requirement specifiers the function needs, e.g. ['six==1.16.0']; "
        "workers install them once per distinct set",
    )
    py_modules: list[str] = Field(
        default_factory=list,
        max_length=MAX_BUNDLES,
        description="base64 zip files of modules and packages, put first on the function's "
        "path; stored once each, by content",
    )
    sources: list[SourceText] = Field(
        default_factory=list,
        max_length=MAX_BUNDLES,
        description="the function's source (and its modules'), shown in the tracebacks of "
        f"its tasks; at most {MAX_SOURCES_CHARS} characters together",
    )

    @model_validator(mode="after")
    def _sources_are_capped(self) -> RegisterFunctionV1:
        total = sum(len(s.text) for s in self.sources)
        if total > MAX_SOURCES_CHARS:
            raise ValueError(
                f"sources hold {total} characters, over the limit of {MAX_SOURCES_CHARS}"
            )
        return self


class TaskOptions(RetentionOptions):
    deadline_s: float | None = Field(
        # Deadlines are kept in whole milliseconds: a shorter one would be stored as 0.
        default=None,
        ge=0.001,
        description="seconds the task may run, at least 0.001; the server default if unset",
    )
    max_attempts: int | None = Field(
        default=None, ge=1, le=100, description="executions allowed if workers die"
    )


class CallOptions(TaskOptions):
    """A call without its payload: what a binary submit takes as query parameters."""

    function_id: str
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="a second submit with the same key returns the first task",
    )
    depends_on: list[str] = Field(
        default=[],
        max_length=MAX_DEPENDENCIES,
        description="ids of your tasks whose results are among the arguments (futures): "
        "the task waits (WAITING, holding no worker) until they complete, and fails "
        "with error_kind dependency_failed if one fails or is cancelled",
    )


class ExecuteFunction(CallOptions):
    payload: str = Field(description="base64 text of the pickled ((args...), {kwargs})")


class ExecuteBatch(TaskOptions):
    function_id: str
    payloads: list[str] = Field(min_length=1)


class WaitForTasks(_Strict):
    task_ids: list[str] = Field(
        min_length=1, description="at most the gateway's max_wait_ids (10,000 by default)"
    )
    wait: float = Field(default=0, ge=0, description="seconds to wait for all to end")
    any: bool = Field(
        default=False,
        description="answer once any task has ended (with those that ended within the "
        "next 0.1 s too), for progress; the ended ones are those with a terminal status",
    )


class CancelTasks(_Strict):
    task_ids: list[str] = Field(
        min_length=1, description="at most the gateway's max_wait_ids (10,000 by default)"
    )


class FunctionCreated(BaseModel):
    function_id: str


class FunctionRegistered(FunctionCreated):
    version: int = Field(description="registrations under this name so far, this one included")
    warnings: list[str] = Field(
        description="modules the function is pickled by reference to that workers may lack"
    )


class FunctionView(BaseModel):
    function_id: str
    name: str
    created_at_ms: int
    size_bytes: int


class TaskCreated(BaseModel):
    task_id: str


class BatchCreated(BaseModel):
    task_ids: list[str]


class StatusView(BaseModel):
    task_id: str
    status: TaskStatus


class ResultView(StatusView):
    result: str | None = Field(
        description="base64 pickle of the value (or of the exception) once the task ended"
    )


class TaskView(ResultView):
    function_id: str
    attempt: int
    max_attempts: int
    deadline_s: float
    queued_at_ms: int
    started_at_ms: int | None
    finished_at_ms: int | None
    worker_id: str | None
    error: str | None = Field(description="traceback or failure reason when FAILED or CANCELLED")
    error_kind: ErrorKind | None


class TaskLogs(BaseModel):
    task_id: str
    status: TaskStatus
    logs: str = Field(description="stdout and stderr; each attempt after `--- attempt N ---`")
    truncated: bool = Field(description="an attempt printed more than the cap, and was cut")


class TaskList(BaseModel):
    tasks: list[TaskView]


class ErrorBody(BaseModel):
    detail: str


class TaskPage(BaseModel):
    tasks: list[TaskView] = Field(description="newest first; `result` is always null here")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class WorkerView(BaseModel):
    worker_id: str
    slots: int
    busy: int
    prefetched: int = Field(
        default=0, description="tasks it holds beyond its slots, to start when one frees"
    )
    draining: bool
    joined_ms: int
    last_heartbeat_ms: int


class WorkersView(BaseModel):
    dispatcher: str | None = Field(description="the active dispatcher; null if none runs")
    mode: str | None
    workers: list[WorkerView]


class MinuteView(BaseModel):
    minute_ms: int
    completed: int
    failed: int


class StatsView(BaseModel):
    queued: int
    running: int
    workers: int
    slots: int
    completed_last_minute: int
    failed_last_minute: int
    ended_per_minute: list[MinuteView] = Field(description="the last hour, oldest first")
    dispatcher: str | None
    mode: str | None


class NameView(BaseModel):
    name: str
    function_id: str = Field(description="the latest version, which the name calls")
    version: int
    versions: list[str] = Field(description="function ids, version 1 first")
