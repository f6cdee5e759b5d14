"""TaskRecord -> JSON-ready dicts. Results leave the gateway as base64 text."""

from __future__ import annotations

from typing import Any

from common import payloads
from common.models import FunctionRecord, TaskRecord, TaskStatus


def result_text(record: TaskRecord) -> str | None:
    if not record.status.terminal or record.result is None:
        return None
    return payloads.encode(record.result)


def course_status(record: TaskRecord) -> TaskStatus:
    """The course API knows no CANCELLED: there a cancelled task is FAILED, its result
    the pickled CancelledError, which is what its clients expect of a failure. Nor
    WAITING (for its futures): there it is QUEUED."""
    if record.status is TaskStatus.WAITING:
        return TaskStatus.QUEUED
    return TaskStatus.FAILED if record.status is TaskStatus.CANCELLED else record.status


def status_view(record: TaskRecord) -> dict[str, Any]:
    """The course API's `/status` answer."""
    return {"task_id": record.task_id, "status": course_status(record).value}


def result_view(record: TaskRecord) -> dict[str, Any]:
    """The course API's `/result` answer."""
    return {**status_view(record), "result": result_text(record)}


def task_view(record: TaskRecord, *, with_result: bool = True) -> dict[str, Any]:
    """The /v1 view; `with_result=False` leaves the `result` key out."""
    result = {"result": result_text(record)} if with_result else {}
    return {
        "task_id": record.task_id,
        "status": record.status.value,
        **result,
        "function_id": record.function_id,
        "attempt": record.attempt,
        "max_attempts": record.max_attempts,
        "deadline_s": record.deadline_s,
        "queued_at_ms": record.queued_at_ms,
        "started_at_ms": record.started_at_ms,
        "finished_at_ms": record.finished_at_ms,
        "worker_id": record.worker_id,
        "error": record.error,
        "error_kind": record.error_kind.value if record.error_kind else None,
    }


def function_view(record: FunctionRecord) -> dict[str, Any]:
    return {
        "function_id": record.function_id,
        "name": record.name,
        "created_at_ms": record.created_at_ms,
        "size_bytes": record.size_bytes,
    }
