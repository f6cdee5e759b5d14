"""Local mode's worker: the worker loop of remote workers (worker.loop.WorkerLoop),
run on the dispatcher's event loop instead of in a process of its own, with its
messages handed over in memory (common.local_link).

The loop's turn (`WorkerLoop.step`, which polls without waiting here) runs when a
message arrives for it, when a slot's pipe or output is readable, and at its own
timers (deadlines, heartbeats). The slots' descriptors are watched through an epoll
set of their own, whose one descriptor the event loop watches: asyncio's readers
would make the descriptors non-blocking, and the pool writes to slots blocking. So a
TASK goes from the dispatcher straight to a slot, and a result straight back. Its
slots are forked from a fork server this process starts with the allow-listed
environment alone (worker.pool), which dies with it (PR_SET_PDEATHSIG), and this
process is not dumpable: user code reads nothing of the dispatcher's.

The first version ran this loop in a thread of the dispatcher; sharing the GIL cost
about 1 ms per task, because the thread waited on its own poll and then for the GIL.
Here nothing waits on a second thread: one event loop serves both. The price: what the
pool does synchronously (replacing a slot: kill, join, a fork-server spawn) holds the
dispatcher's loop for its milliseconds, and a failing turn is logged, not fatal.
"""

from __future__ import annotations

import asyncio
import logging
import select
import time

from common import local_link
from worker.loop import WorkerLoop
from worker.settings import WorkerSettings

logger = logging.getLogger(__name__)

_DRAIN_POLL_S = 0.01


class LocalWorker:
    def __init__(self, settings: WorkerSettings) -> None:
        self.worker_id = settings.worker_id
        self._loop = asyncio.get_running_loop()
        end = local_link.WorkerEnd(self._deliver)
        self.link = local_link.DispatcherEnd(self.worker_id.encode(), end, self.wake)
        self._worker = WorkerLoop(settings, link=end)
        self._slots = select.epoll()  # readable when any slot's pipe or output is
        self._watched: tuple[int, frozenset[int]] = (-1, frozenset())  # (generation, fds)
        self._loop.add_reader(self._slots.fileno(), self._slot_readable)
        self._timer: asyncio.TimerHandle | None = None
        self._turn_queued = False
        self._stopped = False

    def _deliver(self, frames: list[bytes]) -> None:
        self.link.deliver(frames)

    def start(self) -> None:
        """Say HELLO and take the first turn."""
        self._worker.connect()
        self.wake()

    def wake(self) -> None:
        """Queue a turn of the worker loop (one, however many ask before it runs)."""
        if not self._turn_queued and not self._stopped:
            self._turn_queued = True
            self._loop.call_soon(self._turn)

    def _slot_readable(self) -> None:
        """A slot's pipe or output is readable: its result is read in this pass of the
        event loop, not in the next one that `wake` would queue a turn for (one pass
        fewer per task; a turn already queued then finds little to do)."""
        if not self._stopped:
            self._turn()

    def _turn(self) -> None:
        self._turn_queued = False
        if self._stopped:
            return
        if self._timer is not None:
            self._timer.cancel()
        try:
            self._worker.step(timeout_ms=0)
        except Exception:  # a bug in one turn must not stop the dispatcher's loop
            logger.exception("local worker: a turn of its loop failed")
        self._watch_slots()
        self._timer = self._loop.call_later(self._worker.poll_timeout_ms() / 1000, self.wake)

    def _watch_slots(self) -> None:
        """A new epoll set when slots were replaced or an output ended (rare): a closed
        descriptor leaves the set by itself, and a new one may have its number."""
        generation, fds = self._worker.slot_fds()
        watched = (generation, frozenset(fds))
        if watched == self._watched:
            return
        self._loop.remove_reader(self._slots.fileno())
        self._slots.close()
        self._slots = select.epoll()
        for fd in fds:
            self._slots.register(fd, select.EPOLLIN)
        self._loop.add_reader(self._slots.fileno(), self._slot_readable)
        self._watched = watched

    async def stop(self, timeout_s: float = 5) -> None:
        """Drain: running tasks may finish (for the worker's drain timeout, at most
        `timeout_s`) and their results be acknowledged; then BYE and close the slots."""
        if self._stopped:
            return
        until = time.monotonic() + timeout_s
        self._worker.begin_drain()
        self.wake()
        while not self._worker.drained() and time.monotonic() < until:
            await asyncio.sleep(_DRAIN_POLL_S)  # turns run meanwhile, from readers and timers
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        self._loop.remove_reader(self._slots.fileno())
        self._slots.close()
        self._worker.finish()
