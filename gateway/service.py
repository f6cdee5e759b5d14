"""What the routes do, apart from HTTP: check payloads, apply defaults, submit,
read tasks back and wait for them to end."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Iterable, Sequence

from common import payloads
from common.errors import InvalidPayload, TaskNotFound
from common.models import FunctionEnv, FunctionRecord, TaskRecord, check_id, new_id
from common.requirements import validate_requirements
from common.store import Store
from gateway.checker import PayloadChecker
from gateway.completions import CompletionHub, Watch
from gateway.environments import (
    bundles_from,
    requirement_name,
    top_level,
    unavailable_warnings,
    zip_names,
)
from gateway.schemas import ExecuteFunction
from gateway.settings import GatewaySettings

READ_SLICE = 500
"""Task records read per round trip when waiting on many (see `_read`)."""


class TaskService:
    def __init__(self, settings: GatewaySettings, store: Store, hub: CompletionHub) -> None:
        self.settings = settings
        self.store = store
        self.hub = hub
        self.checker = PayloadChecker(
            max_bytes=settings.max_payload_bytes, max_opcodes=settings.max_pickle_opcodes
        )

    def close(self) -> None:
        self.checker.close()

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
    ) -> tuple[str, list[str]]:
        """Store a function (and its environment); returns its id and warnings about
        modules it refers to that workers may not be able to import."""
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
        await self.store.register_function(function_id, name, data, env, sources)
        shipped = {top_level(n) for z in bundles.values() for n in zip_names(z)}
        shipped |= {requirement_name(r) for r in wanted}
        modules = await asyncio.to_thread(payloads.referenced_modules, data)
        return function_id, unavailable_warnings(modules, shipped)

    async def get_function(self, function_id: str) -> FunctionRecord:
        return await self.store.get_function(check_id(function_id, "function_id"))

    async def submit(
        self,
        function_id: str,
        texts: Sequence[str],
        *,
        deadline_s: float | None,
        max_attempts: int | None,
        idempotency_key: str | None = None,
        task_ids: Sequence[str] | None = None,
    ) -> list[str]:
        function_id = check_id(function_id, "function_id")
        if len(texts) > self.settings.max_batch_size:
            raise InvalidPayload(f"a batch holds at most {self.settings.max_batch_size} tasks")
        deadline = deadline_s or self.settings.default_deadline_s
        if deadline > self.settings.max_deadline_s:
            raise InvalidPayload(f"deadline_s is at most {self.settings.max_deadline_s:g}")
        attempts = max_attempts or self.settings.default_max_attempts
        args = await self.decode(texts)
        ids = list(task_ids) if task_ids is not None else [new_id() for _ in texts]
        return await self.store.submit(
            function_id,
            list(zip(ids, args, strict=True)),
            deadline_s=deadline,
            max_attempts=attempts,
            idempotency_key=idempotency_key,
            idempotency_digest=""
            if idempotency_key is None
            else await _request_digest(function_id, args, deadline, attempts),
            idempotency_ttl_s=self.settings.idempotency_ttl_s,
        )

    async def submit_call(self, body: ExecuteFunction, *, task_id: str | None = None) -> str:
        """Queue one call as the API describes it; returns its task id (an earlier
        task's when the idempotency key was seen before)."""
        (accepted,) = await self.submit(
            body.function_id,
            [body.payload],
            deadline_s=body.deadline_s,
            max_attempts=body.max_attempts,
            idempotency_key=body.idempotency_key,
            task_ids=None if task_id is None else [task_id],
        )
        return accepted

    async def get(self, task_id: str, *, with_result: bool = True) -> TaskRecord:
        task_id = check_id(task_id, "task_id")
        record = await self.store.get_task(task_id, with_result=with_result)
        if record is None:
            raise TaskNotFound(task_id)
        return record

    def clamp_wait(self, wait_s: float) -> float:
        return max(0.0, min(wait_s, self.settings.max_wait_s))

    async def wait(self, task_id: str, wait_s: float) -> TaskRecord:
        """The task once it ended, or as it is after `wait_s`."""
        task_id = check_id(task_id, "task_id")
        if wait_s <= 0:
            return await self.get(task_id)
        (record,) = await self.wait_many([task_id], wait_s)
        if record is None:
            raise TaskNotFound(task_id)
        return record

    async def _read(self, task_ids: Sequence[str]) -> list[TaskRecord | None]:
        """Records, read in slices: redis-py takes ~15 us per command to pack a pipeline,
        so one of 10,000 reads would hold the event loop for 150 ms."""
        records: list[TaskRecord | None] = []
        for start in range(0, len(task_ids), READ_SLICE):
            records += await self.store.get_tasks(task_ids[start : start + READ_SLICE])
        return records

    async def wait_many(
        self, task_ids: Sequence[str], wait_s: float, *, watch: Watch | None = None
    ) -> list[TaskRecord | None]:
        """Records of `task_ids` once all ended (or are unknown), or as they are after
        `wait_s`. Ended tasks arrive through a watch; a task is read from the store at
        the start, when its result was too large to be published, after the
        subscription was lost, and at the timeout if it was never seen. Pass the
        `watch` registered before the tasks were submitted to skip the first read: it
        holds whatever ended since."""
        if len(task_ids) > self.settings.max_wait_ids:
            raise InvalidPayload(
                f"task_ids holds {len(task_ids)} ids; at most {self.settings.max_wait_ids}"
                " may be waited for in one request"
            )
        wanted = [check_id(t, "task_id") for t in task_ids]
        ids = set(wanted)
        deadline = time.monotonic() + self.clamp_wait(wait_s)
        found: dict[str, TaskRecord | None] = {}
        still_open = set(ids)  # kept up to date per record: a wake-up costs O(ended), not O(ids)

        def note(records: Iterable[tuple[str, TaskRecord | None]]) -> None:
            for task_id, record in records:
                found[task_id] = record
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
                try:
                    await asyncio.wait_for(watch.event.wait(), remaining)
                except TimeoutError:
                    pass
        return [found.get(t) for t in wanted]


async def _request_digest(
    function_id: str, args: Sequence[bytes], deadline_s: float, max_attempts: int
) -> str:
    """What an idempotency key is bound to: the same key with another digest is another
    request, refused (409) rather than answered with the first request's task."""
    digest = hashlib.sha256(f"{function_id}|{deadline_s!r}|{max_attempts}".encode())
    for data in args:
        digest.update(len(data).to_bytes(8, "big"))
        if len(data) > 2**16:  # hashlib lets go of the GIL on large data: the loop runs on
            await asyncio.to_thread(digest.update, data)
        else:
            digest.update(data)
    return digest.hexdigest()
