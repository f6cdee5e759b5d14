"""A fixed number of pre-started slot processes, replaced when one dies or is
killed at its deadline. Driven by one thread (the worker loop), which polls
`fds()` and calls `collect(fd)` when one is readable, and polls `output_fds()`
(each slot's stdout/stderr pipe) and calls `read_output(fd)`. Output goes to
`on_output(job, data)`; what a slot prints while idle is dropped. A slot's pipe
is drained before its result (or its death) is reported, so a task's output
always comes before its end."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from common.hardening import slot_environment
from common.models import FunctionEnv
from worker import metrics, slot

logger = logging.getLogger(__name__)

_READ_BYTES = 64 * 1024
_MAX_READ_PER_CALL = 1024 * 1024  # one chatty slot must not starve the loop
# Drained at a task's end: all it wrote (a pipe holds 64 KiB), yet bounded, as a
# child process the task left behind may still hold the pipe and keep writing.
_MAX_DRAIN_AT_END = 4 * 1024 * 1024
# The link to a slot is a socketpair; with the default buffer (about 200 KiB) a 1 MB job
# or result crosses it in five writes, each waiting for the other side to read: 1.6-2.2
# ms per 1 MB round trip against 1.3-1.8 with 4 MiB (measured; the kernel caps the
# request at net.core.wmem_max, 4 MiB on these VMs, often 208 KiB elsewhere).
_LINK_BUFFER_BYTES = 4 * 1024 * 1024

SPARE_IDLE_S = 2.0
"""How long a spare slot (see `SlotPool.block`) stays idle before it is retired."""


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
    futures: dict[str, bytes] = field(default_factory=dict)  # task id -> its result
    depth: int = 0  # > 0: a nested call
    prefetched: bool = False  # QUEUED in the store until the dispatcher hears STARTED
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


@dataclass(frozen=True, slots=True)
class SlotRequest:
    """A nested call from the function running in slot `fd` (see `faas.nested`):
    ("call" or "run", function_id, task_ids, payloads, options), ("await", task_ids) or
    ("inline", function_id); "run" is a call that also waits for its tasks."""

    fd: int
    job: Job
    kind: str
    body: tuple[Any, ...]


@dataclass(slots=True)
class _Slot:
    process: BaseProcess
    conn: Connection
    output: Connection  # read end of its stdout/stderr pipe
    job: Job | None = None
    blocked: bool = False  # its function waits on nested calls: the slot is lent out
    idle_since: float = field(default_factory=time.monotonic)
    output_open: bool = True  # False after EOF (the slot closed fds 1 and 2)
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


def _widen(conn: Connection) -> None:
    """Ask for a larger send buffer on this end of a slot's socketpair (the kernel
    caps it, never refuses it)."""
    with socket.fromfd(conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _LINK_BUFFER_BYTES)


class SlotPool:
    """Slots are bound to the tenant whose code they first ran, and to the
    environment it ran in: code can leave state behind in its process (a
    monkeypatched module, a thread, imported packages), so a slot that must run
    another tenant's task, or a task in another environment, is replaced first.
    `max_tasks_per_slot` also replaces a slot after that many tasks (0: never).

    A slot whose function waits on nested calls is lent out: up to `max_spare_slots`
    spare processes run other work meanwhile, and are retired once idle again."""

    def __init__(
        self,
        size: int,
        *,
        max_result_bytes: int = 16 * 2**20,
        max_tasks_per_slot: int = 0,
        limits: slot.Limits | None = None,
        max_spare_slots: int | None = None,
        on_output: Callable[[Job, bytes], None] | None = None,
        capture_output: bool = True,
    ) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one slot")
        self._base = size
        self._max_spares = 4 * size if max_spare_slots is None else max_spare_slots
        self._ctx = _context()
        self._on_output = on_output
        self._capture = capture_output  # False: slots print to the worker's own stdout
        self._outputs: dict[int, int] = {}  # output pipe fd -> its slot's fd
        self._max_result_bytes = max_result_bytes
        self._max_tasks = max_tasks_per_slot
        self._limits = limits or slot.Limits()
        self._slots: dict[int, _Slot] = {}
        # Changes whenever a slot comes or goes: a new slot's pipes may reuse the numbers
        # of a closed one's, which a watcher keyed on numbers alone would miss.
        self.generation = 0
        for _ in range(size):
            self._spawn()

    def _spawn(self) -> int:
        parent, child = self._ctx.Pipe()
        _widen(parent)
        _widen(child)
        output, output_end = self._ctx.Pipe(duplex=False)
        args = (child, self._max_result_bytes, self._limits, output_end if self._capture else None)
        process = self._ctx.Process(target=slot.serve, args=args, daemon=True)
        with slot_environment():  # the fork server may start (or restart) here
            process.start()
        child.close()
        output_end.close()
        os.set_blocking(output.fileno(), False)
        self._slots[parent.fileno()] = _Slot(process, parent, output, output_open=self._capture)
        self.generation += 1
        self._outputs[output.fileno()] = parent.fileno()
        return parent.fileno()

    def _forget(self, fd: int) -> _Slot:
        s = self._slots.pop(fd)
        self.generation += 1
        self._outputs.pop(s.output.fileno(), None)
        s.conn.close()
        s.output.close()
        return s

    @property
    def size(self) -> int:
        return len(self._slots)

    @property
    def base(self) -> int:
        """Slots without the spare ones."""
        return self._base

    def idle(self) -> int:
        return sum(1 for s in self._slots.values() if s.job is None)

    def jobs(self) -> list[Job]:
        return [s.job for s in self._slots.values() if s.job is not None]

    def fds(self) -> list[int]:
        return list(self._slots)

    def output_fds(self) -> list[int]:
        return [fd for fd, slot_fd in self._outputs.items() if self._slots[slot_fd].output_open]

    def read_output(self, fd: int) -> None:
        """Hand what slot output pipe `fd` holds to `on_output`."""
        self._drain(self._slots[self._outputs[fd]])

    def _drain(self, s: _Slot, limit: int = _MAX_READ_PER_CALL) -> None:
        read = 0
        while s.output_open and read < limit:
            try:
                data = os.read(s.output.fileno(), _READ_BYTES)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                s.output_open = False  # EOF: stop polling it; the slot's end is seen on conn
                return
            read += len(data)
            if s.job is not None and self._on_output is not None:
                self._on_output(s.job, data)

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
        s.conn.send((job.task_id, job.function_id, job.function, job.args, env_path, job.sources,
                     job.futures))  # fmt: skip

    def _recycle(self, fd: int) -> int:
        """Replace the idle slot `fd` with a fresh one; returns the new one's fd."""
        s = self._forget(fd)
        s.process.kill()
        s.process.join(timeout=5)
        metrics.SLOT_REPLACEMENTS.labels("recycled").inc()
        return self._spawn()

    def collect(self, fd: int) -> JobResult | SlotRequest | None:
        """Read what slot `fd` sent: its job's result, a nested call, or None if it
        sent nothing about a job."""
        s = self._slots[fd]
        try:
            message = s.conn.recv()
        except (EOFError, OSError):
            return self._replace(fd, "lost", self._death_reason(s))
        if message[0] != "result":
            if s.job is None:
                logger.warning("an idle slot made a nested call; ignored")
                return None
            return SlotRequest(fd, s.job, message[0], tuple(message[1:]))
        _, task_id, outcome, blob, error = message
        self._drain(s, _MAX_DRAIN_AT_END)  # the slot flushed its output before its outcome
        job, s.job, s.blocked, s.idle_since = s.job, None, False, time.monotonic()
        if job is None or job.task_id != task_id:
            logger.warning("slot sent a result for %s it was not running", task_id)
            return None
        s.tasks_run += 1
        if self._max_tasks and s.tasks_run >= self._max_tasks:
            self._recycle(fd)
        return JobResult(job, outcome, blob, error)

    def reply(self, fd: int, task_id: str, message: tuple[Any, ...]) -> bool:
        """Answer a nested call of the job `task_id` in slot `fd`; False if that slot
        no longer runs it (it ended, was killed or replaced)."""
        s = self._slots.get(fd)
        if s is None or s.job is None or s.job.task_id != task_id:
            return False
        s.conn.send(message)
        return True

    def block(self, fd: int) -> bool:
        """Slot `fd` waits on nested calls: lend it out, forking a spare slot if the
        cap allows. False if it may not wait: it would leave no slot free to run
        other work and no spare may be forked."""
        s = self._slots[fd]
        blocked = sum(1 for x in self._slots.values() if x.blocked)
        if self.size < self._base + min(blocked + 1, self._max_spares):
            self._spawn()
        elif blocked + 1 >= self.size:
            return False
        s.blocked = True
        return True

    def unblock(self, fd: int) -> None:
        if fd in self._slots:
            self._slots[fd].blocked = False

    def trim(self, now: float) -> bool:
        """Retire spare slots no longer needed once idle for `SPARE_IDLE_S` (a parent
        calling children in a loop would otherwise fork one per call); True if the
        pool shrank."""
        blocked = sum(1 for s in self._slots.values() if s.blocked)
        excess = self.size - (self._base + min(blocked, self._max_spares))
        if excess <= 0:
            return False
        idle = [fd for fd, s in self._slots.items()
                if s.job is None and now - s.idle_since >= SPARE_IDLE_S][:excess]  # fmt: skip
        for fd in idle:
            s = self._forget(fd)
            s.process.kill()
            s.process.join(timeout=5)
        return bool(idle)

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

    def cancel(self, task_id: str, attempt: int, error: str) -> JobResult | None:
        """Kill the slot running that attempt (it is replaced, like at a deadline);
        None if no slot runs it."""
        for fd, s in self._slots.items():
            if s.job is not None and (s.job.task_id, s.job.attempt) == (task_id, attempt):
                s.process.kill()
                return self._replace(fd, "cancelled", error)
        return None

    def next_deadline(self) -> float | None:
        deadlines = [s.job.deadline_at for s in self._slots.values() if s.job is not None]
        return min(deadlines, default=None)

    def _replace(self, fd: int, outcome: str, error: str) -> JobResult | None:
        s = self._slots[fd]
        s.process.join(timeout=5)
        self._drain(s, _MAX_DRAIN_AT_END)  # what it printed before it died is the task's
        self._forget(fd)
        self._spawn()
        metrics.SLOT_REPLACEMENTS.labels(outcome).inc()
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
            s.output.close()
        self._slots.clear()
        self._outputs.clear()
