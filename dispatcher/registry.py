"""The workers the dispatcher knows: their credits, their tasks and their liveness.

Credits are how many more tasks a worker may be sent now. In pull mode they come
from the worker (READY, and one back per RESULT); in push mode the dispatcher
derives them from the capacity the worker registered. Either way a task goes to
the worker with the most credits, which in push mode is the least loaded one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from common.store import QueueEntry


@dataclass(slots=True)
class InFlight:
    entry: QueueEntry
    worker_id: str
    deadline_at: float  # monotonic; after it the dispatcher ends the task itself
    sent_at: float = 0.0  # monotonic, for the run-time metric


@dataclass(slots=True)
class WorkerState:
    identity: bytes
    slots: int
    last_seen: float
    joined_at_ms: int
    key: str = ""  # the CURVE public key it registered with ("" on a plain link)
    credits: int = 0
    draining: bool = False  # it said DRAIN: no more work for it
    tasks: dict[str, InFlight] = field(default_factory=dict)
    next_seq: int = 1  # the sequence number its next RESULT must carry
    handed_seq: int = 0  # results up to this one are handed to the writer
    acked_seq: int = 0  # every RESULT up to this one is committed (told in HEARTBEATs)

    @property
    def worker_id(self) -> str:
        return self.identity.decode(errors="replace")


class Registry:
    def __init__(self) -> None:
        self.workers: dict[bytes, WorkerState] = {}

    def credits(self) -> int:
        return sum(w.credits for w in self.workers.values())

    def add(self, identity: bytes, *, slots: int, now: float) -> WorkerState:
        joined = int(time.time() * 1000)
        worker = WorkerState(identity=identity, slots=slots, last_seen=now, joined_at_ms=joined)
        self.workers[identity] = worker
        return worker

    def remove(self, identity: bytes) -> list[InFlight]:
        worker = self.workers.pop(identity, None)
        return list(worker.tasks.values()) if worker else []

    def grant(self, worker: WorkerState, credits: int) -> None:
        """Add credits, never beyond the worker's free slots; none while it drains."""
        if worker.draining:
            worker.credits = 0
            return
        worker.credits = max(0, min(worker.credits + credits, worker.slots - len(worker.tasks)))

    def choose(self) -> WorkerState | None:
        best = max(self.workers.values(), key=lambda w: w.credits, default=None)
        return best if best is not None and best.credits > 0 else None

    def assign(self, worker: WorkerState, flight: InFlight) -> None:
        worker.tasks[flight.entry.task_id] = flight
        worker.credits -= 1

    def holder(self, task_id: str) -> WorkerState | None:
        for worker in self.workers.values():
            if task_id in worker.tasks:
                return worker
        return None

    def silent_since(self, cutoff: float) -> list[WorkerState]:
        return [w for w in self.workers.values() if w.last_seen < cutoff]

    def overdue(self, now: float) -> list[tuple[WorkerState, InFlight]]:
        return [
            (w, f) for w in self.workers.values() for f in w.tasks.values() if now >= f.deadline_at
        ]
