"""TaskRecord -> JSON-ready dicts. Results leave the gateway as base64 text."""

from __future__ import annotations

from typing import Any

from common import payloads
from common.models import FunctionRecord, TaskRecord


def result_text(record: TaskRecord) -> str | None:
    if not record.status.terminal or record.result is None:
        return None
    return payloads.encode(record.result)


def status_view(record: TaskRecord) -> dict[str, Any]:
    return {"task_id": record.task_id, "status": record.status.value}


def result_view(record: TaskRecord) -> dict[str, Any]:
    return {**status_view(record), "result": result_text(record)}


def task_view(record: TaskRecord) -> dict[str, Any]:
    return {
        **result_view(record),
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
