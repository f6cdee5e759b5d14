"""What the routes do, apart from HTTP: check payloads, apply defaults, submit,
read tasks back, wait for them to end and cancel them. Every call acts for one
tenant: another tenant's function or task is answered exactly like an unknown id."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import pickle
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass

from common import payloads
from common.errors import InvalidPayload, TaskNotFound
from common.models import (
    DEFAULT_RETENTION,
    FunctionEnv,
    FunctionRecord,
    Retention,
    TaskRecord,
    TaskStatus,
    check_id,
    new_id,
)
from common.requirements import validate_requirements
from common.store import Store, Submission
from common.tenants import Tenant
from gateway import metrics
from gateway.checker import PayloadChecker
from gateway.coalesce import SubmitCoalescer
from gateway.completions import CompletionHub, Watch
from gateway.environments import (
    bundles_from,
    requirement_name,
    top_level,
    unavailable_warnings,
    zip_names,
)
from gateway.schemas import CallOptions
from gateway.settings import GatewaySettings

READ_SLICE = 500
"""Task records read (or cancelled) per round trip when naming many (see `_read`)."""
CANCELLED_ERROR = "CancelledError: the task was cancelled by request"
"""The `error` of a cancelled task; its `result` is this as a pickled
concurrent.futures.CancelledError, which any Python can unpickle."""
COALESCE_S = 0.1
"""How long a wait for any task lingers after the first end, to gather more."""


@dataclass(frozen=True, slots=True)
class Accepted:
    """A call queued: its task id, and what this call stored when it stored a new task
    QUEUED (no dependencies, no earlier task for its idempotency key)."""

    task_id: str
    stored: Submission | None
    queued_ms: int = 0

    @property
    def queued(self) -> TaskRecord | None:
        """The new task's record as stored, which reading it back would only repeat."""
        return None if self.stored is None else _queued(self.stored, self.queued_ms)


class TaskService:
    def __init__(self, settings: GatewaySettings, store: Store, hub: CompletionHub) -> None:
        self.settings = settings
        self.store = store
        self.hub = hub
        self.checker = PayloadChecker(
            max_bytes=settings.max_payload_bytes, max_opcodes=settings.max_pickle_opcodes
        )
        self.coalescer = SubmitCoalescer(store)

    async def close(self) -> None:
        self.checker.close()
        await self.coalescer.close()

    async def decode(self, texts: Sequence[str]) -> list[bytes]:
        """Check and decode payload texts; InvalidPayload if one is bad."""
        return await self.checker.decode(texts)

    async def register(
        self,
        name: str,
        payload: str,
        requirements: Sequence[str] = (),
        py_modules: Sequence[str] = (),
        sources: Sequence[tuple[str, int, str]] = (),
        *,
        tenant: Tenant,
        retention: Retention = DEFAULT_RETENTION,
    ) -> tuple[str, int, list[str]]:
        """Store a function (and its environment, and how long its tasks are kept);
        returns its id, its version under `name`, and warnings about modules it refers
        to that workers may lack."""
        function_id = new_id()
        (data,) = await self.decode([payload])
        try:
            wanted = validate_requirements(requirements)
        except ValueError as exc:
            raise InvalidPayload(f"requirements: {exc}") from None
        bundles = bundles_from(py_modules, max_bytes=self.settings.max_payload_bytes)
        for digest, zipped in bundles.items():
            await self.store.put_bundle(digest, zipped)
        env = FunctionEnv(wanted, tuple(bundles))
        version = await self.store.register_function(
            function_id, name, data, env, sources, tenant=tenant.name, retention=retention
        )
        shipped = {top_level(n) for z in bundles.values() for n in zip_names(z)}
        shipped |= {requirement_name(r) for r in wanted}
        modules = await asyncio.to_thread(payloads.referenced_modules, data)
        return function_id, version, unavailable_warnings(modules, shipped)

    async def get_function(self, function_id: str, *, tenant: Tenant) -> FunctionRecord:
        return await self.store.get_function(
            check_id(function_id, "function_id"), tenant=tenant.name
        )

    async def submit(
        self,
        function_id: str,
        texts: Sequence[str],
        *,
        deadline_s: float | None,
        max_attempts: int | None,
        tenant: Tenant,
        idempotency_key: str | None = None,
        task_ids: Sequence[str] | None = None,
        depends_on: Sequence[str] = (),
        retention: Retention = DEFAULT_RETENTION,
    ) -> list[str]:
        """Queue calls whose payloads are base64 text; returns the accepted ids."""
        if len(texts) > self.settings.max_batch_size:
            raise InvalidPayload(f"a batch holds at most {self.settings.max_batch_size} tasks")
        return await self.submit_checked(
            function_id,
            await self.decode(texts),
            deadline_s=deadline_s,
            max_attempts=max_attempts,
            tenant=tenant,
            idempotency_key=idempotency_key,
            task_ids=task_ids,
            depends_on=depends_on,
            retention=retention,
        )

    async def submit_checked(
        self,
        function_id: str,
        args: Sequence[bytes],
        *,
        deadline_s: float | None,
        max_attempts: int | None,
        tenant: Tenant,
        idempotency_key: str | None = None,
        task_ids: Sequence[str] | None = None,
        depends_on: Sequence[str] = (),
        retention: Retention = DEFAULT_RETENTION,
    ) -> list[str]:
        """Queue calls whose payloads passed the checker (`decode` or `check`); with
        `depends_on` (tasks as arguments, see `faas.futures`) they wait for those."""
        submission = await self._submission(
            function_id, args, deadline_s=deadline_s, max_attempts=max_attempts,
            tenant=tenant, idempotency_key=idempotency_key, task_ids=task_ids,
            depends_on=depends_on, retention=retention,
        )  # fmt: skip
        accepted = await self.store.submit(
            submission.function_id,
            submission.tasks,
            deadline_s=submission.deadline_s,
            max_attempts=submission.max_attempts,
            idempotency_key=idempotency_key,
            idempotency_digest=submission.idempotency_digest,
            idempotency_ttl_s=submission.idempotency_ttl_s,
            tenant=tenant.name,
            max_unfinished=submission.max_unfinished,
            depends_on=submission.depends_on,
            retention=retention,
        )
        metrics.SUBMITTED.inc(len(accepted))  # a repeated idempotency key counts again
        return accepted

    async def _submission(
        self,
        function_id: str,
        args: Sequence[bytes],
        *,
        deadline_s: float | None,
        max_attempts: int | None,
        tenant: Tenant,
        idempotency_key: str | None,
        task_ids: Sequence[str] | None,
        depends_on: Sequence[str],
        retention: Retention,
    ) -> Submission:
        """The store's submission for a request: ids checked, defaults applied, limits
        enforced (InvalidPayload), the idempotency digest computed."""
        function_id = check_id(function_id, "function_id")
        depends_on = [check_id(d, "depends_on") for d in depends_on]
        if len(args) > self.settings.max_batch_size:
            raise InvalidPayload(f"a batch holds at most {self.settings.max_batch_size} tasks")
        deadline = deadline_s or self.settings.default_deadline_s
        if deadline > self.settings.max_deadline_s:
            raise InvalidPayload(f"deadline_s is at most {self.settings.max_deadline_s:g}")
        attempts = max_attempts or self.settings.default_max_attempts
        ids = list(task_ids) if task_ids is not None else [new_id() for _ in args]
        return Submission(
            function_id,
            list(zip(ids, args, strict=True)),
            deadline,
            attempts,
            tenant=tenant.name,
            max_unfinished=tenant.max_unfinished or self.settings.max_unfinished_tasks,
            idempotency_key=idempotency_key,
            idempotency_digest=""
            if idempotency_key is None
            else await _request_digest(function_id, args, deadline, attempts, retention),
            idempotency_ttl_s=self.settings.idempotency_ttl_s,
            depends_on=depends_on,
            retention=retention,
        )

    async def submit_call(
        self,
        body: CallOptions,
        payload: str | bytes,
        *,
        tenant: Tenant,
        task_id: str | None = None,
    ) -> Accepted:
        """Queue one call as the API describes it, its payload base64 text or a raw
        pickle (checked here); committed together with the calls that arrive with it
        (`SubmitCoalescer`). Answers its task id (an earlier task's when the
        idempotency key was seen before) and, for a new task, what was stored."""
        if isinstance(payload, bytes):
            args = [await self.checker.check(payload)]
        else:
            args = await self.decode([payload])
        submission = await self._submission(
            body.function_id, args, deadline_s=body.deadline_s, max_attempts=body.max_attempts,
            tenant=tenant, idempotency_key=body.idempotency_key,
            task_ids=None if task_id is None else [task_id], depends_on=body.depends_on,
            retention=body.retention,
        )  # fmt: skip
        submitted = await self.coalescer.submit(submission)
        metrics.SUBMITTED.inc()  # a repeated idempotency key counts again
        (accepted,) = submitted.task_ids
        ((own_id, _),) = submission.tasks
        if accepted != own_id or submission.depends_on:
            return Accepted(accepted, None)
        return Accepted(accepted, submission, submitted.queued_ms)

    async def get(self, task_id: str, *, tenant: Tenant, with_result: bool = True) -> TaskRecord:
        task_id = check_id(task_id, "task_id")
        record = _owned(await self.store.get_task(task_id, with_result=with_result), tenant)
        if record is None:
            raise TaskNotFound(task_id)
        return record

    async def cancel(self, task_ids: Sequence[str], *, tenant: Tenant) -> list[TaskRecord]:
        """Cancel tasks and return them as they are afterwards (once each, in order):
        CANCELLED, or the end they already had. TaskNotFound if one is unknown (or
        another tenant's), and then none is cancelled."""
        wanted = list(dict.fromkeys(self._checked_ids(task_ids)))
        for task_id, record in zip(wanted, await self._read(wanted, with_result=False),
                                   strict=True):  # fmt: skip
            if _owned(record, tenant) is None:
                raise TaskNotFound(task_id)
        failure = pickle.dumps(CancelledError(CANCELLED_ERROR))
        for start in range(0, len(wanted), READ_SLICE):
            chunk = wanted[start : start + READ_SLICE]
            await self.store.cancel(chunk, failure=failure, error=CANCELLED_ERROR)
        return [r for r in await self._read(wanted) if r is not None]

    def _checked_ids(self, task_ids: Sequence[str]) -> list[str]:
        """Canonical task ids; InvalidPayload beyond max_wait_ids of them in one request."""
        if len(task_ids) > self.settings.max_wait_ids:
            raise InvalidPayload(
                f"task_ids holds {len(task_ids)} ids; at most {self.settings.max_wait_ids}"
                " may be named in one request"
            )
        return [check_id(t, "task_id") for t in task_ids]

    def clamp_wait(self, wait_s: float) -> float:
        return max(0.0, min(wait_s, self.settings.max_wait_s))

    async def wait(self, task_id: str, wait_s: float, *, tenant: Tenant) -> TaskRecord:
        """The task once it ended, or as it is after `wait_s`; the caller answers it
        with its result (see `_results_read`)."""
        task_id = check_id(task_id, "task_id")
        if wait_s <= 0:
            record = await self.get(task_id, tenant=tenant)
            await self._results_read([record])
            return record
        (record,) = await self.wait_many([task_id], wait_s, tenant=tenant)
        if record is None:
            raise TaskNotFound(task_id)
        return record

    async def _results_read(self, records: Iterable[TaskRecord | None]) -> None:
        """The results of these records are about to leave in a response: the ended
        tasks that asked for it are kept only `expire_after_read_s` more."""
        ids = [r.task_id for r in records if r and r.status.terminal and r.expire_after_read]
        if ids:
            await self.store.expire_read(ids, self.settings.expire_after_read_s)

    async def _read(
        self, task_ids: Sequence[str], *, with_result: bool = True
    ) -> list[TaskRecord | None]:
        """Records, read in slices: redis-py takes ~15 us per command to pack a pipeline,
        so one of 10,000 reads would hold the event loop for 150 ms."""
        records: list[TaskRecord | None] = []
        for start in range(0, len(task_ids), READ_SLICE):
            chunk = task_ids[start : start + READ_SLICE]
            records += await self.store.get_tasks(chunk, with_result=with_result)
        return records

    async def wait_many(
        self,
        task_ids: Sequence[str],
        wait_s: float,
        *,
        tenant: Tenant,
        watch: Watch | None = None,
        any_ended: bool = False,
    ) -> list[TaskRecord | None]:
        """Records of `task_ids` once all ended (or are unknown, or another tenant's:
        None for both), or as they are after
        `wait_s`. Ended tasks arrive through a watch; a task is read from the store at
        the start, when its result was too large to be published, after the
        subscription was lost, and at the timeout if it was never seen. Pass the
        `watch` registered before the tasks were submitted to skip the first read: it
        holds whatever ended since. With `any_ended`, answer once one has ended, after
        `COALESCE_S` more to gather those that end with it. The caller answers them with
        their results (see `_results_read`)."""
        wanted = self._checked_ids(task_ids)
        ids = set(wanted)
        deadline = time.monotonic() + self.clamp_wait(wait_s)
        found: dict[str, TaskRecord | None] = {}
        still_open = set(ids)  # kept up to date per record: a wake-up costs O(ended), not O(ids)

        def note(records: Iterable[tuple[str, TaskRecord | None]]) -> None:
            for task_id, record in records:
                found[task_id] = record = _owned(record, tenant)
                if record is None or record.status.terminal:
                    still_open.discard(task_id)

        with contextlib.ExitStack() as stack:
            to_read = [] if watch is not None else list(ids)
            if watch is None:
                watch = stack.enter_context(self.hub.watch(ids))
            while True:
                ended, stale = watch.take()
                note((t, r) for t, r in ended.items() if r is not None and t in ids)
                to_read += [t for t, r in ended.items() if r is None and t in ids]
                if stale:
                    to_read = list(still_open)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    to_read += [t for t in still_open if t not in found]  # never seen: as they are
                if to_read:
                    unique = list(dict.fromkeys(to_read))
                    note(zip(unique, await self._read(unique), strict=True))
                    to_read = []
                if not still_open or remaining <= 0:
                    break
                if any_ended and len(still_open) < len(ids):
                    remaining = min(remaining, COALESCE_S)
                    deadline = min(deadline, time.monotonic() + COALESCE_S)
                # asyncio.timeout, not wait_for: on 3.11 wait_for wraps the wait in a task
                # of its own, which cost each W1 call 3 more turns of the event loop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await watch.event.wait()
        records = [found.get(t) for t in wanted]
        await self._results_read(records)
        return records


def _queued(submission: Submission, queued_ms: int) -> TaskRecord:
    """The record submit.lua stored for a single task without dependencies."""
    ((task_id, _),) = submission.tasks
    return TaskRecord(
        task_id=task_id,
        function_id=submission.function_id,
        status=TaskStatus.QUEUED,
        attempt=1,
        max_attempts=submission.max_attempts,
        deadline_s=int(submission.deadline_s * 1000) / 1000,
        queued_at_ms=queued_ms,
        started_at_ms=None,
        finished_at_ms=None,
        worker_id=None,
        error=None,
        error_kind=None,
        result=None,
        tenant=submission.tenant,
    )


def _owned(record: TaskRecord | None, tenant: Tenant) -> TaskRecord | None:
    """The record if it is `tenant`'s task, else None: to another tenant it does not exist."""
    return record if record is not None and record.tenant == tenant.name else None


async def _request_digest(
    function_id: str,
    args: Sequence[bytes],
    deadline_s: float,
    max_attempts: int,
    retention: Retention = DEFAULT_RETENTION,
) -> str:
    """What an idempotency key is bound to: the same key with another digest is another
    request, refused (409) rather than answered with the first request's task."""
    options = f"{function_id}|{deadline_s!r}|{max_attempts}"
    if retention != DEFAULT_RETENTION:  # only then: digests of requests without it stay the same
        options += f"|{retention.result_ttl_s}|{retention.expire_after_read}"
    digest = hashlib.sha256(options.encode())
    for data in args:
        digest.update(len(data).to_bytes(8, "big"))
        if len(data) > 2**16:  # hashlib lets go of the GIL on large data: the loop runs on
            await asyncio.to_thread(digest.update, data)
        else:
            digest.update(data)
    return digest.hexdigest()
