"""The gateway's wait logic with a fake store (unit level): the races around a
task that ends before or while a request waits for it."""

from __future__ import annotations

import asyncio
import base64
import pickle
import uuid
from types import SimpleNamespace

from common.models import TaskRecord, TaskStatus
from common.store import Submission, Submitted
from common.tenants import DEFAULT_TENANT, Tenant
from gateway.completions import CompletionHub
from gateway.schemas import ExecuteFunction
from gateway.service import TaskService
from gateway.settings import GatewaySettings

TENANT = Tenant(DEFAULT_TENANT)
COMPLETED = TaskStatus.COMPLETED
PAYLOAD = base64.b64encode(pickle.dumps(((), {}))).decode()


def record(task_id: str, status: TaskStatus) -> TaskRecord:
    return TaskRecord(task_id, "f", status, 1, 1, 1.0, 0, 1, 2, "w", None, None, b"\x80\x04N.")


class InstantStore:
    """Ends every task inside submit, before it returns: the tightest race."""

    def __init__(self, hub: CompletionHub) -> None:
        self.hub = hub
        self.reads: list[list[str]] = []

    async def submit_many(self, submissions: list[Submission]) -> list[Submitted]:
        for submission in submissions:
            for task_id, _args in submission.tasks:
                ended = SimpleNamespace(task_id=task_id, record=record(task_id, COMPLETED))
                self.hub.deliver(ended)  # type: ignore[arg-type]  (an Ended, built)
        return [Submitted([t for t, _ in s.tasks], 0) for s in submissions]

    async def get_tasks(self, task_ids: list[str], **_: object) -> list[TaskRecord | None]:
        self.reads.append(list(task_ids))
        return [record(t, TaskStatus.QUEUED) for t in task_ids]


def service() -> tuple[TaskService, InstantStore, CompletionHub]:
    hub = CompletionHub(store=None)  # type: ignore[arg-type]  (never started: no Redis)
    store = InstantStore(hub)
    return TaskService(GatewaySettings(), store, hub), store, hub  # type: ignore[arg-type]


def test_a_task_that_ends_during_submit_is_answered_at_once_without_a_read() -> None:
    async def scenario() -> None:
        svc, store, hub = service()
        task_id = str(uuid.uuid4())
        body = ExecuteFunction(function_id=str(uuid.uuid4()), payload=PAYLOAD)
        with hub.watch([task_id]) as watch:
            accepted = await svc.submit_call(body, body.payload, tenant=TENANT, task_id=task_id)
            (found,) = await asyncio.wait_for(
                svc.wait_many([accepted.task_id], 30, tenant=TENANT, watch=watch), 2
            )
        assert found is not None and found.status is TaskStatus.COMPLETED
        assert store.reads == []

    asyncio.run(scenario())


def test_a_wait_that_times_out_answers_the_current_state_not_nothing() -> None:
    async def scenario() -> None:
        svc, store, hub = service()
        task_id = str(uuid.uuid4())
        with hub.watch([task_id]) as watch:
            (found,) = await svc.wait_many([task_id], 0.05, tenant=TENANT, watch=watch)
        assert found is not None and found.status is TaskStatus.QUEUED
        assert store.reads == [[task_id]]

    asyncio.run(scenario())
