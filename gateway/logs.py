"""A task's output: read once, or followed as server-sent events while it runs.

Following holds no Redis connection while it waits: it reads what was appended
since its last read (one GETRANGE from its byte offset) every `FOLLOW_POLL_S`,
and the completion hub wakes it the moment the task ends. The dispatcher stores
a task's output before its end, so the read after the end is complete.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
from collections.abc import AsyncIterator

import orjson

from common.models import TaskRecord
from common.output import is_truncated
from common.tenants import Tenant
from gateway.service import TaskService

FOLLOW_POLL_S = 0.25
_RECHECK_S = 5.0  # read the record again even without a wake-up (a missed publish)


def decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def logs_view(record: TaskRecord, text: str) -> dict[str, object]:
    return {
        "task_id": record.task_id,
        "status": record.status.value,
        "logs": text,
        "truncated": is_truncated(text),
    }


def _event(name: str, data: object) -> bytes:
    return f"event: {name}\ndata: {orjson.dumps(data).decode()}\n\n".encode()


async def follow(service: TaskService, record: TaskRecord, tenant: Tenant) -> AsyncIterator[bytes]:
    """SSE: `log` events (JSON strings of new output) until the task ends, then one
    `end` event with its status. A comment line every poll keeps proxies from
    closing an idle stream."""
    task_id = record.task_id
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    offset = 0
    loop = asyncio.get_running_loop()
    checked = loop.time()
    with service.hub.watch([task_id]) as watch:  # before reading: the end cannot be missed
        while True:
            ended = record.status.terminal
            data = await service.store.read_logs(task_id, offset)
            offset += len(data)
            text = decoder.decode(data, final=ended)
            if text:
                yield _event("log", text)
            if ended:
                yield _event("end", {"task_id": task_id, "status": record.status.value})
                return
            if not data:
                yield b": waiting\n\n"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watch.event.wait(), FOLLOW_POLL_S)
            news, stale = watch.take()
            if news or stale or loop.time() - checked >= _RECHECK_S:
                checked = loop.time()
                record = await service.get(task_id, tenant=tenant, with_result=False)
