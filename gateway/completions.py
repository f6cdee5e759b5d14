"""Wakes long-polls the moment a task ends.

One Redis subscription per gateway process carries every task that ends, with its
fields (and its result when small). A request registers a `Watch` on its task ids
*before* it reads their state, so an end can never slip between the read and the
wait; the watch collects the ended records, so usually nothing is read again.
When the subscription breaks and comes back, every watch is marked stale: ends
published meanwhile were missed, so their tasks must be read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator

from common.errors import StoreUnavailable
from common.models import TaskRecord
from common.store import Ended, Store

logger = logging.getLogger(__name__)


class Watch:
    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.ended: dict[str, TaskRecord | None] = {}
        """Tasks seen ending; None where the record must be read (result too large)."""
        self.stale = False

    def deliver(self, ended: Ended) -> None:
        self.ended[ended.task_id] = ended.record
        self.event.set()

    def mark_stale(self) -> None:
        self.stale = True
        self.event.set()

    def take(self) -> tuple[dict[str, TaskRecord | None], bool]:
        """What arrived since the last call, and whether everything must be read again."""
        ended, stale = self.ended, self.stale
        self.ended, self.stale = {}, False
        self.event.clear()
        return ended, stale


class CompletionHub:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._watches: dict[str, set[Watch]] = {}
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
                async for ended in self._store.completions():
                    if ended is None:
                        self.subscribed.set()
                        self._mark_all_stale()
                        continue
                    self.deliver(ended)
            except StoreUnavailable as exc:
                logger.warning("completion subscription lost: %s", exc)
            except Exception:  # a bug here must not leave every long-poll hanging
                logger.exception("completion listener failed; resubscribing")
            self.subscribed.clear()
            self._mark_all_stale()
            await asyncio.sleep(0.5)

    def deliver(self, ended: Ended) -> None:
        for watch in self._watches.get(ended.task_id, ()):
            watch.deliver(ended)

    def _mark_all_stale(self) -> None:
        for watches in self._watches.values():
            for watch in watches:
                watch.mark_stale()

    @contextlib.contextmanager
    def watch(self, task_ids: Iterable[str]) -> Iterator[Watch]:
        """Collects the records of `task_ids` that end while the block runs."""
        watch = Watch()
        ids = list(task_ids)
        for task_id in ids:
            self._watches.setdefault(task_id, set()).add(watch)
        try:
            yield watch
        finally:
            for task_id in ids:
                watches = self._watches.get(task_id)
                if watches is not None:
                    watches.discard(watch)
                    if not watches:
                        del self._watches[task_id]
