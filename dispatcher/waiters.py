"""Who waits for which task to end: the AWAITs of nested calls (see `faas.nested`).

A worker awaits a parent's children; the dispatcher answers with ENDED as each
commits (it commits nearly every end itself), and a periodic sweep reads the rest
from the store (an end committed elsewhere, e.g. a cancel through the gateway).
Answers are gathered per (worker, call) and sent in one message per flush."""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from typing import Any

Waiter = tuple[bytes, int]  # worker identity, call id
Ended = tuple[str, str, str, bytes]  # status, error_kind, error, result
_REFUSALS_KEPT = 10_000


class Waiters:
    def __init__(self) -> None:
        self._by_task: dict[str, set[Waiter]] = defaultdict(set)
        self._answers: dict[Waiter, list[tuple[str, Ended]]] = defaultdict(list)
        # Why the calls of these task ids were refused: a slot's submit does not wait
        # for CALLED, so its wait on them is what reports it (the newest kept).
        self._refusals: OrderedDict[str, str] = OrderedDict()

    def refused(self, task_ids: list[str], why: str) -> None:
        for task_id in task_ids:
            self._refusals[task_id] = why
        while len(self._refusals) > _REFUSALS_KEPT:
            self._refusals.popitem(last=False)

    def refusal(self, task_id: str) -> str:
        """Why `task_id`, which does not exist, was never queued."""
        return self._refusals.get(task_id) or f"task {task_id} not found"

    def add(self, task_ids: list[str], waiter: Waiter) -> None:
        for task_id in task_ids:
            self._by_task[task_id].add(waiter)

    def discard(self, task_ids: list[str], waiter: Waiter) -> None:
        """`waiter` no longer waits for these (its call failed)."""
        for task_id in task_ids:
            waiting = self._by_task.get(task_id)
            if waiting is not None:
                waiting.discard(waiter)
                if not waiting:
                    del self._by_task[task_id]

    def __contains__(self, task_id: str) -> bool:
        return task_id in self._by_task

    def task_ids(self) -> list[str]:
        return list(self._by_task)

    def ended(self, task_id: str, ended: Ended) -> None:
        """`task_id` ended (status "" if it is unknown): answer everyone waiting."""
        for waiter in self._by_task.pop(task_id, ()):
            self._answers[waiter].append((task_id, ended))

    def forget(self, identity: bytes) -> None:
        """A worker left: its waits go with it (it asks again if it comes back)."""
        for task_id in list(self._by_task):
            waiting = self._by_task[task_id]
            waiting -= {w for w in waiting if w[0] == identity}
            if not waiting:
                del self._by_task[task_id]

    def take_answers(self) -> list[tuple[bytes, dict[str, Any], list[bytes]]]:
        """ENDED messages to send: (identity, header, result blobs)."""
        messages = []
        for (identity, call_id), items in self._answers.items():
            tasks = [[t, status, kind, error] for t, (status, kind, error, _) in items]
            blobs = [result for _, (_, _, _, result) in items]
            messages.append((identity, {"call_id": call_id, "tasks": tasks}, blobs))
        self._answers.clear()
        return messages
