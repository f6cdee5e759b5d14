"""The workers the dispatcher knows: their credits, their tasks and their liveness.

Credits are how many more tasks a worker may be sent now. In pull mode they come
from the worker (READY, and one back per RESULT); in push mode the dispatcher
derives them from the capacity the worker registered. Either way a task goes to
the worker with the most credits, which in push mode is the least loaded one.
A worker may hold `prefetch` attempts beyond its slots (see worker.loop); they are
sent last, since a worker with free slots has more credits.

Every operation the dispatcher does per event costs O(1) or O(log n), never a scan
of all workers or all attempts in flight (a scan per dispatch capped the dispatcher
near 2,000 tasks/s and made many small workers slower than a few big ones):
- workers with credits sit in buckets by credit count (ties: the one whose credits
  changed longest ago first); the highest non-empty bucket is tracked lazily;
- deadlines sit in a heap with lazy deletion: an entry whose attempt has ended is
  dropped when it surfaces, and the heap is rebuilt when stale entries outnumber
  live ones, so memory stays O(in flight); a prefetched attempt has no deadline
  (and no entry) until it starts;
- liveness is an ordering by last_seen (monotonic time only moves forward, so a
  touch moves the worker to the end): the silent ones are a prefix;
- `holder` is a dict from task id to worker.

Top-level tasks (not nested calls) go only where fewer of them run than the worker
has base slots (the spare slots it forks while parents wait run children): else a
stream of new parents could take every spare slot and leave the children they wait
for nowhere to run. Finding such a worker looks past the best one only when that one
has no room, which happens only while parents wait on nested calls.
"""

from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import dataclass, field

from common.store import QueueEntry


@dataclass(slots=True)
class InFlight:
    entry: QueueEntry
    worker_id: str
    deadline_at: float  # monotonic; after it the dispatcher ends the task itself
    sent_at: float = 0.0  # monotonic, for the run-time metric
    # Sent while every slot of its worker was taken: QUEUED in the store, and no
    # deadline here, until the worker says it STARTED.
    prefetched: bool = False
    recalled: bool = False  # asked back (RECALL) for another worker's free slot
    deadline_tag: int = -1  # its entry in the registry's deadline heap


@dataclass(slots=True, eq=False)
class WorkerState:
    identity: bytes
    slots: int  # now, spare slots included
    last_seen: float
    joined_at_ms: int
    key: str = ""  # the CURVE public key it registered with ("" on a plain link)
    credits: int = 0  # change it through the Registry only: it is indexed
    draining: bool = False  # it said DRAIN: no more work for it
    tasks: dict[str, InFlight] = field(default_factory=dict)
    next_seq: int = 1  # the sequence number its next RESULT must carry
    handed_seq: int = 0  # results up to this one are handed to the writer
    acked_seq: int = 0  # every RESULT up to this one is committed (told in HEARTBEATs)
    unacked_bytes: int = 0  # of the results it sent since the last HEARTBEAT told it
    base_slots: int = 0  # without spare slots (see SLOTS)
    top_level: int = 0  # attempts it runs that are not nested calls
    prefetch: int = 0  # tasks it may hold beyond its slots
    batches: bool = False  # it takes TASKs in a BATCH
    # Attempts it holds that have not started, oldest first (a subset of `tasks`).
    waiting: dict[str, InFlight] = field(default_factory=dict)

    @property
    def prefetched(self) -> int:
        return len(self.waiting)

    def idle_slots(self) -> int:
        return self.slots - (len(self.tasks) - self.prefetched)

    def has_room_for_top_level(self) -> bool:
        # The worker itself starts at most base_slots of them at once (worker.loop).
        return self.top_level < self.base_slots + self.prefetch

    @property
    def worker_id(self) -> str:
        return self.identity.decode(errors="replace")


# (deadline_at, tag, worker, task_id). Not the InFlight itself: an ended attempt's item
# stays in the heap until compaction, and would keep its payload alive (about 1 GB of
# 1 MB arguments at the compaction threshold, measured).
_Deadline = tuple[float, int, WorkerState, str]


class Registry:
    def __init__(self) -> None:
        self.workers: dict[bytes, WorkerState] = {}
        self._total_credits = 0
        # credits -> the workers with that many (a dict used as an ordered set)
        self._buckets: dict[int, dict[bytes, WorkerState]] = {}
        self._top = 0  # no bucket above this one is non-empty
        self._deadlines: list[_Deadline] = []
        self._order = itertools.count()
        self._in_flight = 0  # attempts with a deadline (in the heap)
        self._holders: dict[str, WorkerState] = {}
        self._by_last_seen: dict[bytes, WorkerState] = {}  # oldest first

    def credits(self) -> int:
        return self._total_credits

    def add(
        self, identity: bytes, *, slots: int, now: float, base_slots: int | None = None
    ) -> WorkerState:
        self.remove(identity)
        joined = int(time.time() * 1000)
        worker = WorkerState(identity=identity, slots=slots, last_seen=now, joined_at_ms=joined,
                             base_slots=slots if base_slots is None else base_slots)  # fmt: skip
        self.workers[identity] = worker
        self._by_last_seen[identity] = worker
        return worker

    def remove(self, identity: bytes) -> list[InFlight]:
        worker = self.workers.pop(identity, None)
        if worker is None:
            return []
        self._set_credits(worker, 0)
        del self._by_last_seen[identity]
        for task_id, flight in worker.tasks.items():
            self._forget(task_id, worker, flight)
        self._compact()
        return list(worker.tasks.values())  # their heap entries go stale

    def seen(self, worker: WorkerState, now: float) -> None:
        """The worker spoke at `now` (monotonic)."""
        worker.last_seen = max(worker.last_seen, now)
        if self.workers.get(worker.identity) is worker:
            order = self._by_last_seen
            del order[worker.identity]
            order[worker.identity] = worker

    def grant(self, worker: WorkerState, credits: int) -> None:
        """Add credits, never beyond the worker's free slots; none while it drains."""
        if worker.draining:
            self._set_credits(worker, 0)
            return
        free = worker.slots + worker.prefetch - len(worker.tasks)
        self._set_credits(worker, max(0, min(worker.credits + credits, free)))

    def choose(self, *, top_level: bool = False) -> WorkerState | None:
        """The worker with the most credits; for a `top_level` task, the one with the
        most credits that has room for it."""
        while self._top > 0 and not self._buckets.get(self._top):
            self._top -= 1
        if self._top == 0:
            return None
        best = next(iter(self._buckets[self._top].values()))
        if not top_level or best.has_room_for_top_level():
            return best
        for credits in range(self._top, 0, -1):
            for worker in self._buckets.get(credits, {}).values():
                if worker.has_room_for_top_level():
                    return worker
        return None

    def assign(self, worker: WorkerState, flight: InFlight) -> None:
        self.adopt(worker, flight)
        self._set_credits(worker, worker.credits - 1)

    def adopt(self, worker: WorkerState, flight: InFlight) -> None:
        """Record an attempt the worker runs without spending a credit (it claimed it
        when it registered)."""
        task_id = flight.entry.task_id
        if (held := worker.tasks.pop(task_id, None)) is not None:
            self._forget(task_id, worker, held)
            worker.top_level -= held.entry.depth == 0
            worker.waiting.pop(task_id, None)
        worker.tasks[task_id] = flight
        worker.top_level += flight.entry.depth == 0
        if flight.prefetched:
            worker.waiting[task_id] = flight
        self._holders[task_id] = worker
        if not flight.prefetched:  # a prefetched one has no deadline until it starts
            self._in_flight += 1
            flight.deadline_tag = next(self._order)
            item = (flight.deadline_at, flight.deadline_tag, worker, task_id)
            heapq.heappush(self._deadlines, item)

    def release(self, worker: WorkerState, task_id: str) -> InFlight | None:
        """The attempt ended (a result, its deadline): the worker no longer holds it."""
        flight = worker.tasks.pop(task_id, None)
        if flight is not None:
            self._forget(task_id, worker, flight)
            worker.top_level -= flight.entry.depth == 0
            worker.waiting.pop(task_id, None)
            self._compact()
        return flight

    def started(self, worker: WorkerState, flight: InFlight, deadline_at: float) -> InFlight:
        """A prefetched attempt took a slot: from now on its deadline runs."""
        running = InFlight(flight.entry, flight.worker_id, deadline_at, time.monotonic())
        self.adopt(worker, running)  # the prefetched one had no heap entry
        return running

    def holder(self, task_id: str) -> WorkerState | None:
        worker = self._holders.get(task_id)
        return worker if worker is not None and task_id in worker.tasks else None

    def silent_since(self, cutoff: float) -> list[WorkerState]:
        silent = []
        for worker in self._by_last_seen.values():
            if worker.last_seen >= cutoff:
                break
            silent.append(worker)
        return silent

    def overdue(self, now: float) -> list[tuple[WorkerState, InFlight]]:
        """Attempts past their deadline, earliest first. They stay held until released."""
        heap, due = self._deadlines, []
        while heap and heap[0][0] <= now:
            item = heapq.heappop(heap)
            if self._live(item):
                due.append(item)
        for item in due:  # still held: they surface again until the caller releases them
            heapq.heappush(heap, item)
        return [(worker, worker.tasks[task_id]) for _, _, worker, task_id in due]

    # -- the indexes -------------------------------------------------------------------

    def _set_credits(self, worker: WorkerState, credits: int) -> None:
        old = worker.credits
        if credits == old and (credits == 0 or self.workers.get(worker.identity) is worker):
            return
        if old > 0:
            self._buckets[old].pop(worker.identity, None)
        self._total_credits += credits - old
        worker.credits = credits
        if credits > 0 and self.workers.get(worker.identity) is worker:
            self._buckets.setdefault(credits, {})[worker.identity] = worker
            self._top = max(self._top, credits)

    def _live(self, item: _Deadline) -> bool:
        _, tag, worker, task_id = item
        flight = worker.tasks.get(task_id)
        return (
            flight is not None
            and flight.deadline_tag == tag
            and self.workers.get(worker.identity) is worker
        )

    def _forget(self, task_id: str, worker: WorkerState, flight: InFlight) -> None:
        if self._holders.get(task_id) is worker:
            del self._holders[task_id]
        self._in_flight -= not flight.prefetched

    def _compact(self) -> None:
        # Lazy deletion leaves heap entries behind; rebuild once stale ones dominate.
        if len(self._deadlines) > 2 * self._in_flight + 1024:
            self._deadlines = [item for item in self._deadlines if self._live(item)]
            heapq.heapify(self._deadlines)
            self._in_flight = len(self._deadlines)
