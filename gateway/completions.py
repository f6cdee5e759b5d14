"""Wakes long-polls the moment a task ends.

One Redis subscription per gateway process carries the id of every task that
ends; requests wait on an asyncio.Event registered *before* they read the task's
status, so an end can never slip between the read and the wait. When the
subscription breaks and comes back, every waiter is woken to look again, since
ends published meanwhile were missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator

from common.errors import StoreUnavailable
from common.store import Store

logger = logging.getLogger(__name__)


class CompletionHub:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="completion-hub")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.subscribed.wait(), timeout=5)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self) -> None:
        while True:
            try:
                async for task_id in self._store.completions():
                    if task_id is None:
                        self.subscribed.set()
                        self._wake_all()
                    else:
                        for event in self._waiters.get(task_id, ()):
                            event.set()
            except StoreUnavailable as exc:
                logger.warning("completion subscription lost: %s", exc)
            self.subscribed.clear()
            self._wake_all()
            await asyncio.sleep(0.5)

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    @contextlib.contextmanager
    def watch(self, task_ids: Iterable[str]) -> Iterator[asyncio.Event]:
        """An event set whenever one of `task_ids` ends (or may have ended)."""
        event = asyncio.Event()
        ids = list(task_ids)
        for task_id in ids:
            self._waiters.setdefault(task_id, set()).add(event)
        try:
            yield event
        finally:
            for task_id in ids:
                waiting = self._waiters.get(task_id)
                if waiting is not None:
                    waiting.discard(event)
                    if not waiting:
                        del self._waiters[task_id]
