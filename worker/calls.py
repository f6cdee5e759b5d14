"""The worker's side of nested calls: what its slots asked the dispatcher (CALL, a
CALL that also awaits for a sync call or a map, AWAIT, INLINE) and have not had an
answer to yet. Kept so that they can be asked again after the worker registers again
(a restarted dispatcher knows none of them); all are idempotent at the dispatcher
(child ids are derived, awaiting twice is harmless)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common import wire
from worker.pool import SlotRequest

Ended = tuple[str, str, str, bytes]  # status, error_kind, error, result


@dataclass(slots=True)
class Pending:
    call_id: int
    fd: int
    task_id: str  # the calling job's task
    command: wire.Command  # CALL, AWAIT or INLINE
    header: dict[str, Any]
    blobs: list[bytes]
    waiting: set[str] = field(default_factory=set)  # tasks awaited and not ended yet
    ended: dict[str, Ended] = field(default_factory=dict)


class NestedCalls:
    def __init__(self) -> None:
        self._pending: dict[int, Pending] = {}
        self._next_id = 1

    def call(self, request: SlotRequest, *, wait: bool = False) -> Pending:
        """A CALL; with `wait`, one that also awaits its tasks (answered by ENDED,
        by CALLED only if they could not be queued)."""
        function_id, task_ids, payloads, options = request.body
        header = {
            "parent": request.job.task_id,
            "attempt": request.job.attempt,
            "function_id": function_id,
            "task_ids": list(task_ids),
            **{
                k: v
                for k, v in options.items()
                if k in ("deadline_s", "max_attempts", "depends_on")
            },
        }
        if wait:
            header["await"] = True
        pending = self._add(request, wire.Command.CALL, header, list(payloads))
        if wait:
            pending.waiting = set(task_ids)
        return pending

    def inline(self, request: SlotRequest) -> Pending:
        """May the job run this function in its own slot? (`faas.nested`, inline calls)"""
        (function_id,) = request.body
        header = {
            "parent": request.job.task_id,
            "attempt": request.job.attempt,
            "function_id": function_id,
        }
        return self._add(request, wire.Command.INLINE, header, [])

    def wait(self, request: SlotRequest) -> Pending:
        (task_ids,) = request.body
        pending = self._add(request, wire.Command.AWAIT, {"task_ids": list(task_ids)}, [])
        pending.waiting = set(task_ids)
        return pending

    def _add(
        self,
        request: SlotRequest,
        command: wire.Command,
        header: dict[str, Any],
        blobs: list[bytes],
    ) -> Pending:
        call_id, self._next_id = self._next_id, self._next_id + 1
        header["call_id"] = call_id
        pending = Pending(call_id, request.fd, request.job.task_id, command, header, blobs)
        self._pending[call_id] = pending
        return pending

    def called(self, call_id: int, error: str | None) -> Pending | None:
        """The answer to a CALL: the pending call it settles (one that also awaits is
        settled by CALLED only when it failed; one that does not, by any CALLED: its
        slot did not wait, and a refusal reaches it through its wait)."""
        pending = self._pending.get(call_id)
        if pending is None or pending.command != wire.Command.CALL:
            return None
        if pending.waiting and not error:
            return None
        return self._pending.pop(call_id)

    def answered(self, call_id: int) -> Pending | None:
        """The INLINE question this answers."""
        pending = self._pending.get(call_id)
        if pending is None or pending.command != wire.Command.INLINE:
            return None
        return self._pending.pop(call_id)

    def ended(self, call_id: int, tasks: list[list[Any]], blobs: list[bytes]) -> Pending | None:
        """Note tasks that ended; the wait once all of its tasks have."""
        pending = self._pending.get(call_id)
        if pending is None or not pending.waiting:
            return None
        for (task_id, status, kind, error), blob in zip(tasks, blobs, strict=False):
            if task_id in pending.waiting:
                pending.waiting.discard(task_id)
                pending.ended[task_id] = (status, kind, error, blob)
        if pending.waiting:
            return None
        return self._pending.pop(call_id)

    def forget(self, task_id: str) -> None:
        """The calling task ended (or its slot died): nobody waits for these answers."""
        for call_id in [c for c, p in self._pending.items() if p.task_id == task_id]:
            del self._pending[call_id]

    def outstanding(self) -> list[tuple[wire.Command, dict[str, Any], list[bytes]]]:
        """What to ask again after registering again (AWAITs for what has not ended; a
        CALL that awaits is sent whole, marked so its ended tasks are answered)."""
        again = []
        for p in self._pending.values():
            header = p.header
            if p.command == wire.Command.AWAIT:
                header = {**header, "task_ids": sorted(p.waiting)}
            elif p.waiting:
                header = {**header, "again": True}
            again.append((p.command, header, p.blobs))
        return again
