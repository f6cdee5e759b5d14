"""What the status routes read: pages of the task index, and the dispatcher's view of
its workers and of the tasks that ended per minute (see `dispatcher.status`)."""

from __future__ import annotations

import re
from typing import Any

import msgpack

from common.errors import InvalidPayload
from common.models import TaskRecord, TaskStatus, check_id
from common.store import Store

_CURSOR = re.compile(r"(old:)?\d+-\d+")


def parse_cursor(cursor: str | None) -> str | None:
    """A cursor as `Store.list_tasks` gives and takes it; None for the first page."""
    if not cursor:
        return None
    if not _CURSOR.fullmatch(cursor):
        raise InvalidPayload("cursor must be the next_cursor of a previous page")
    return cursor


async def list_tasks(
    store: Store,
    *,
    tenant: str,
    status: TaskStatus | None,
    function_id: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[TaskRecord], str | None]:
    wanted_fn = check_id(function_id, "function_id") if function_id else None

    def keep(record: TaskRecord) -> bool:
        return (status is None or record.status == status) and (
            wanted_fn is None or record.function_id == wanted_fn
        )

    records, after = await store.list_tasks(
        limit=limit, tenant=tenant, cursor=parse_cursor(cursor), keep=keep
    )
    return records, after


async def dispatcher_view(store: Store) -> dict[str, Any]:
    """The active dispatcher's last view, or an empty one when none is running."""
    raw = await store.get_status()
    if raw is None:
        return {"dispatcher": None, "mode": None, "at_ms": None, "backlog": 0,
                "workers": [], "ended_per_minute": []}  # fmt: skip
    view: dict[str, Any] = msgpack.unpackb(raw)
    return view


async def stats(store: Store) -> dict[str, Any]:
    view = await dispatcher_view(store)
    queued, held = await store.queue_depth()
    workers = view["workers"]
    running = sum(w["busy"] for w in workers)
    minutes = view["ended_per_minute"]
    last = minutes[-1] if minutes else {}
    return {
        # Attempts the dispatcher holds but has not sent yet are still waiting.
        "queued": queued + max(held - running, 0),
        "running": running,
        "workers": len(workers),
        "slots": sum(w["slots"] for w in workers),
        "completed_last_minute": last.get(TaskStatus.COMPLETED.value, 0),
        "failed_last_minute": last.get(TaskStatus.FAILED.value, 0),
        "ended_per_minute": [
            {
                "minute_ms": m["minute_ms"],
                "completed": m.get(TaskStatus.COMPLETED.value, 0),
                "failed": m.get(TaskStatus.FAILED.value, 0),
            }
            for m in minutes
        ],
        "dispatcher": view["dispatcher"],
        "mode": view["mode"],
    }
