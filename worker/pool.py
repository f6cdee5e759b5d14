"""A fixed number of pre-started slot processes, replaced when one dies or is
killed at its deadline. Driven by one thread (the worker loop), which polls
`fds()` and calls `collect(fd)` when one is readable."""

from __future__ import annotations

import logging
import multiprocessing
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from common.models import FunctionEnv
from worker import slot

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Job:
    task_id: str
    attempt: int
    function_id: str
    function: bytes
    args: bytes
    deadline_s: float
    tenant: str = ""
    env: FunctionEnv | None = None
    sources: bytes = b""  # msgpack (file, first line, text) list, for tracebacks
    started_at: float = field(default=0.0)

    @property
    def deadline_at(self) -> float:
        return self.started_at + self.deadline_s


@dataclass(frozen=True, slots=True)
class JobResult:
    job: Job
    outcome: str  # one of common.wire.OUTCOMES
    result: bytes
    error: str


@dataclass(slots=True)
class _Slot:
    process: BaseProcess
    conn: Connection
    job: Job | None = None
    # (tenant, environment) whose code it has run: it never runs another's
    binding: tuple[str, str] | None = None
    tasks_run: int = 0


def _context() -> multiprocessing.context.BaseContext:
    # A fork server forks slots from a clean, single-threaded process with the
    # heavy imports already done: replacing a slot takes milliseconds, and the
    # worker's own threads (ZeroMQ, asyncio) are never forked.
    # The guard makes the fork server die with this worker (and the slots with it).
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["worker.forkserver_guard", "worker.slot"])
    return ctx


class SlotPool:
    """Slots are bound to the tenant whose code they first ran, and to the
    environment it ran in: code can leave state behind in its process (a
    monkeypatched module, a thread, imported packages), so a slot that must run
    another tenant's task, or a task in another environment, is replaced first.
    `max_tasks_per_slot` also replaces a slot after that many tasks (0: never)."""

    def __init__(
        self,
        size: int,
        *,
        max_result_bytes: int = 16 * 2**20,
        max_tasks_per_slot: int = 0,
        limits: slot.Limits | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one slot")
        self._ctx = _context()
        self._max_result_bytes = max_result_bytes
        self._max_tasks = max_tasks_per_slot
        self._limits = limits or slot.Limits()
        self._slots: dict[int, _Slot] = {}
        for _ in range(size):
            self._spawn()

    def _spawn(self) -> int:
        parent, child = self._ctx.Pipe()
        args = (child, self._max_result_bytes, self._limits)
        process = self._ctx.Process(target=slot.serve, args=args, daemon=True)
        process.start()
        child.close()
        self._slots[parent.fileno()] = _Slot(process, parent)
        return parent.fileno()

    @property
    def size(self) -> int:
        return len(self._slots)

    def idle(self) -> int:
        return sum(1 for s in self._slots.values() if s.job is None)

    def jobs(self) -> list[Job]:
        return [s.job for s in self._slots.values() if s.job is not None]

    def fds(self) -> list[int]:
        return list(self._slots)

    def run(self, job: Job, env_path: str = "", env_key: str = "") -> None:
        """Start `job` in an idle slot, with `env_path` (if any) first on sys.path."""
        idle = [fd for fd, s in self._slots.items() if s.job is None]
        if not idle:
            raise RuntimeError("no idle slot")
        # An idle slot bound the same way, else a fresh one, else replace another.
        binding = (job.tenant, env_key)
        fd = next((fd for fd in idle if self._slots[fd].binding == binding), None)
        fd = fd or next((fd for fd in idle if self._slots[fd].binding is None), None)
        if fd is None:
            fd = self._recycle(idle[0])
        s = self._slots[fd]
        job.started_at = time.monotonic()
        s.job, s.binding = job, binding
        s.conn.send((job.task_id, job.function_id, job.function, job.args, env_path, job.sources))

    def _recycle(self, fd: int) -> int:
        """Replace the idle slot `fd` with a fresh one; returns the new one's fd."""
        s = self._slots.pop(fd)
        s.process.kill()
        s.process.join(timeout=5)
        s.conn.close()
        return self._spawn()

    def collect(self, fd: int) -> JobResult | None:
        """Read what slot `fd` sent; None if it sent nothing about a job."""
        s = self._slots[fd]
        try:
            task_id, outcome, blob, error = s.conn.recv()
        except (EOFError, OSError):
            return self._replace(fd, "lost", self._death_reason(s))
        job, s.job = s.job, None
        if job is None or job.task_id != task_id:
            logger.warning("slot sent a result for %s it was not running", task_id)
            return None
        s.tasks_run += 1
        if self._max_tasks and s.tasks_run >= self._max_tasks:
            self._recycle(fd)
        return JobResult(job, outcome, blob, error)

    def expire(self, now: float) -> list[JobResult]:
        overdue = [
            fd for fd, s in self._slots.items() if s.job is not None and now >= s.job.deadline_at
        ]
        results = []
        for fd in overdue:
            s = self._slots[fd]
            s.process.kill()
            error = f"WorkerFailure: task exceeded deadline of {s.job.deadline_s:g} s"
            result = self._replace(fd, "deadline", error)
            if result is not None:
                results.append(result)
        return results

    def next_deadline(self) -> float | None:
        deadlines = [s.job.deadline_at for s in self._slots.values() if s.job is not None]
        return min(deadlines, default=None)

    def _replace(self, fd: int, outcome: str, error: str) -> JobResult | None:
        s = self._slots.pop(fd)
        s.conn.close()
        s.process.join(timeout=5)
        self._spawn()
        if s.job is None:
            logger.warning("idle slot process %s died (%s); replaced", s.process.pid, error)
            return None
        logger.info("task %s: %s; slot replaced", s.job.task_id, error)
        return JobResult(s.job, outcome, b"", error)

    @staticmethod
    def _death_reason(s: _Slot) -> str:
        s.process.join(timeout=5)
        code = s.process.exitcode
        if code is not None and code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exit code {code}"
        return f"WorkerFailure: slot process died while running the task ({how})"

    def close(self) -> None:
        for s in self._slots.values():
            s.process.kill()
        for s in self._slots.values():
            s.process.join(timeout=5)
            s.conn.close()
        self._slots.clear()
