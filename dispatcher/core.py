"""The dispatcher: the one process that moves attempts from the durable queue to
worker slots and commits what comes back.

Three concurrent loops share one ROUTER socket and one Store:
- feed:  while workers have credits, read that many queue entries (or take them
         from the backlog), send each as a TASK, then mark them RUNNING;
- serve: receive worker messages in batches and commit their outcomes in one
         round trip; a lost slot's attempt is re-queued;
- housekeep: renew the lease, heartbeat workers, declare silent workers dead and
         re-queue their attempts, end attempts whose worker never reported their
         deadline, and re-queue attempts held before a restart that no worker
         claimed back;
- watch two lists in the store: workers reported lost (re-queue their attempts)
         and tasks cancelled (drop them from the backlog, CANCEL their workers).

Only the holder of the Redis lease runs these loops. Local mode is the same
machinery with one worker of its own: the worker loop of remote workers, run on this
event loop with an in-memory link instead of ZeroMQ (dispatcher.local).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import math
import os
import socket
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from concurrent.futures import CancelledError
from typing import Any, TypeVar

import zmq
import zmq.asyncio
import zmq.auth.asyncio

from common import curve, local_link, wire
from common.errors import FunctionNotFound, ProtocolError, StoreUnavailable, TaskNotFound
from common.models import MAX_DEPENDENCY_BYTES, DispatchMode, FunctionCode, TaskStatus
from common.store import Outcome, QueueEntry, Store, now_ms
from dispatcher import metrics, outcomes, status
from dispatcher.local import LocalWorker
from dispatcher.registry import InFlight, Registry, WorkerState
from dispatcher.router import Router
from dispatcher.settings import DispatcherSettings
from dispatcher.status import EndedPerMinute
from dispatcher.waiters import Waiters
from worker.settings import WorkerSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")
_FUNCTION_CACHE_SIZE = 1024
_MAX_BATCH = 1000
_STOP_WAIT_S = 5.0
_QUEUE_DEPTH_EVERY_S = 2.0  # a Redis round trip, only when metrics are served
# A prefetched task waiting this long means its worker's slots stayed busy that long:
# one free elsewhere gets it (RECALL). Shorter would recall those about to start.
_RECALL_AFTER_S = 0.5
# RUNNING is written this long after a send (see _mark_running): most tasks of a sequential
# caller end sooner, and their end writes the start. Status reads lag by as much.
_START_WRITE_DELAY_S = 0.02
# A worker keeps each result until told it is committed (to send it again after a
# reconnect), and is told on heartbeats. Results of this many bytes since the last one
# are acknowledged as soon as they commit: 1 MB results at 65 a second otherwise held
# 30-40 MB in the worker loop until the next heartbeat, and its heap went back and
# forth by as much (page faults on every regrowth).
_ACK_AT_ONCE_BYTES = 1 << 20


@dataclasses.dataclass(slots=True)
class Sending:
    """A TASK assigned in this dispatch pass, not sent yet."""

    flight: InFlight
    header: dict[str, Any]
    blobs: list[bytes]


class LeaseLost(RuntimeError):
    """Another dispatcher holds the lease now; this one must stop dispatching."""


class Dispatcher:
    def __init__(self, settings: DispatcherSettings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.instance_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.registry = Registry()
        self.endpoint = ""
        self._backlog: deque[QueueEntry] = deque()
        # Attempts held by a previous dispatcher, until a worker claims them, and
        # which worker the store says was running each (if it got that far).
        self._orphans: dict[str, QueueEntry] = {}
        self._orphan_holders: dict[str, str] = {}
        self._orphans_until = 0.0
        self._functions: OrderedDict[str, FunctionCode] = OrderedDict()
        self._credit = asyncio.Event()
        self._context = zmq.asyncio.Context()
        self._router: Router | local_link.DispatcherEnd | None = None
        self._auth: zmq.auth.asyncio.AsyncioAuthenticator | None = None
        self._server_keys = (
            curve.KeyPair.from_secret(settings.dispatcher_secret_key)
            if settings.dispatcher_secret_key
            else None
        )
        self._local_worker: LocalWorker | None = None
        # Writes waiting for the writer loop: whatever accumulates while one write is
        # in flight goes in the next, so under load they batch by themselves.
        # (task_id, attempt, worker_id, ms): written after _START_WRITE_DELAY_S, or not
        # at all if the attempt's end commits first (the end records the start then).
        self._starts: list[tuple[str, int, str, int]] = []
        self._start_write: asyncio.TimerHandle | None = None
        self._ended: list[Outcome] = []
        self._lost: list[tuple[QueueEntry, str]] = []
        self._logs: list[tuple[str, bytes]] = []  # tasks' output, appended before ends
        self._to_write = asyncio.Event()
        self._resets: list[bytes] = []  # workers to re-register after this batch
        self._fetches: list[tuple[bytes, str]] = []  # (worker, bundle digest) asked for
        self._background: set[asyncio.Task[None]] = set()
        self._reporting: list[WorkerState] = []  # workers that sent results in this batch
        self._unacked: dict[bytes, WorkerState] = {}  # reported since the last flush
        self.active = False  # holds the lease and dispatches
        self._stopping = False  # the loops end
        self.last_tick = time.monotonic()  # the event loop's heartbeat, for /healthz
        self.ended = EndedPerMinute()
        self.waiters = Waiters()  # nested calls' AWAITs
        self._children_queued = True  # the nested stream may hold entries: read it first
        # The last dispatch held back a top-level task: no worker had room for one
        # (see `Registry.choose`). Until results come back, only children may go.
        self._top_level_held = False
        # Children of the attempts running now (nested calls), cancelled with them.
        self._children: dict[str, list[str]] = {}
        # Children whose CALL is being queued now: an AWAIT on them waits for that.
        self._queuing: dict[str, asyncio.Event] = {}

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Wait for the lease, then dispatch until `stop` is set or the lease is lost."""
        if not await self._acquire_lease(stop):
            return
        self.active = True
        try:
            await self._retrying(self.store.ensure_group)
            self._bind()
            await self._recover()
            if self._local_worker is not None:
                self._local_worker.start()
            await self._run_loops(stop)
        finally:
            await self._shutdown()

    async def _run_loops(self, stop: asyncio.Event) -> None:
        coroutines = [
            self._feed(), self._serve(), self._write(), self._housekeep(),
            self._watch("lost-worker reports", self.store.next_lost_worker, self._worker_lost),
            self._watch("cancels", self.store.next_cancels, self._cancelled),
        ]  # fmt: skip
        loops = [asyncio.create_task(c) for c in coroutines]
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([*loops, stopper], return_when=asyncio.FIRST_COMPLETED)
        if stopper in done and self._local_worker is not None:
            # Drain our own worker while the loops still read its results and BYE,
            # so a task running at a graceful stop finishes instead of running again.
            await self._local_worker.stop(self.settings.drain_timeout_s + 5)
        self._stopping = True
        for task in [*loops, stopper]:
            task.cancel()
        self._to_write.set()  # the writer leaves its loop even if a cancel went astray
        _, stuck = await asyncio.wait([*loops, stopper], timeout=_STOP_WAIT_S)
        if stuck:  # a library swallowed the cancellation: stop anyway, do not hang
            logger.warning("%d loops ignored their cancellation; stopping anyway", len(stuck))
        for task in done:
            if task is not stopper and not task.cancelled() and task.exception():
                raise task.exception()  # type: ignore[misc]

    async def _acquire_lease(self, stop: asyncio.Event) -> bool:
        waiting_logged = False
        while not stop.is_set():
            self.last_tick = time.monotonic()
            try:
                if await self.store.acquire_lease(self.instance_id, self.settings.lease_ttl_s):
                    logger.info("dispatcher %s holds the lease", self.instance_id)
                    return True
                if not waiting_logged:
                    holder = await self.store.lease_holder()
                    logger.info("dispatcher %s is active; standing by", holder)
                    waiting_logged = True
            except StoreUnavailable as exc:
                logger.warning("cannot reach redis for the lease: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.settings.lease_ttl_s / 4)
            except TimeoutError:
                pass
        return False

    def _bind(self) -> None:
        if self.settings.mode == DispatchMode.LOCAL:  # its one worker runs here
            settings = WorkerSettings(mode=DispatchMode.PULL, slots=self.settings.slots,
                                      worker_id=f"local-{self.instance_id}")  # fmt: skip
            self._local_worker = LocalWorker(settings)
            self._router = self._local_worker.link
            self.endpoint = "its own worker loop"
            logger.info("dispatching in local mode")
            return
        sock = zmq.Socket(self._context, zmq.ROUTER)  # sync: see dispatcher.router
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # an unreachable worker raises, not drops
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a reconnecting worker takes its identity back
        if self._server_keys is not None:
            allowed = curve.parse_keys(self.settings.worker_public_keys)
            self._auth = curve.serve_securely(
                self._context, sock, self._server_keys.secret, allowed
            )
        else:
            logger.warning("the worker link is neither encrypted nor authenticated: set "
                           "FAAS_DISPATCHER_SECRET_KEY and FAAS_WORKER_PUBLIC_KEYS")  # fmt: skip
        sock.bind(f"tcp://{self.settings.bind_host}:{self.settings.dispatcher_port}")
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._router = Router(sock)
        logger.info("dispatching in %s mode on %s", self.settings.mode, self.endpoint)

    async def _recover(self) -> None:
        """Attempts still in our PEL were held by a dispatcher that died. In local mode
        its slots died with it: re-queue them now. Remote workers may still be running
        them, or hold their unacknowledged results: each is re-queued when the worker
        the store names as running it registers without claiming it, or after
        `recovery_grace_s` if no worker claims it."""
        held: list[QueueEntry] = []
        for nested in (True, False):
            after = "0"
            while True:
                read = functools.partial(
                    self.store.read_queue, count=_MAX_BATCH, block_ms=None, pending=True,
                    after=after, nested=nested,
                )  # fmt: skip
                batch = await self._retrying(read)
                if not batch:
                    break
                held += batch
                after = batch[-1].entry_id
        if not held:
            return
        logger.info("recovering %d attempts held before this dispatcher started", len(held))
        if self.settings.mode == DispatchMode.LOCAL:
            for entry in held:
                await self._requeue(entry, "the dispatcher running it stopped")
            return
        self._orphans = {entry.task_id: entry for entry in held}
        records = await self._retrying(
            lambda: self.store.get_tasks([e.task_id for e in held], with_result=False)
        )
        self._orphan_holders = {
            entry.task_id: record.worker_id
            for entry, record in zip(held, records, strict=True)
            if record is not None
            and record.worker_id
            and record.status == TaskStatus.RUNNING
            and record.attempt == entry.attempt
        }
        self._orphans_until = time.monotonic() + self.settings.recovery_grace_s

    async def _shutdown(self) -> None:
        self.active = False
        # Entries read ahead but never sent go back now, not after a restart's grace.
        self._lost += [(entry, "the dispatcher stopped") for entry in self._backlog]
        self._backlog.clear()
        try:
            await asyncio.wait_for(self._flush(), timeout=5)
        except TimeoutError:
            logger.warning("stopping with unwritten outcomes: those attempts will run again")
        if self._local_worker is not None:
            await self._local_worker.stop()
        if self._router is not None:
            self._router.close()
        if self._auth is not None:
            self._auth.stop()
        self._context.term()
        try:
            await self.store.release_lease(self.instance_id)
        except StoreUnavailable:
            pass  # it expires by itself
        logger.info("dispatcher %s stopped", self.instance_id)

    # -- feed: queue -> workers ------------------------------------------------------------

    def _update_credit(self) -> None:
        if self.registry.credits() > 0 and (self._children_queued or not self._top_level_held):
            self._credit.set()
        else:
            self._credit.clear()

    async def _feed(self) -> None:
        while not self._stopping:
            await self._credit.wait()
            want = min(self.registry.credits(), self.settings.batch_size)
            entries = []
            if self._backlog and (self._children_queued or self._top_level_held):
                # Children run before what was read ahead of them: their parents wait.
                # (While top-level tasks are held back, children may have been queued
                # where this dispatcher does not see it: re-queued, or released by the
                # end of their futures.)
                entries = await self._read_children(want)
            if entries:
                pass
            elif self._backlog:
                entries = [self._backlog.popleft() for _ in range(min(want, len(self._backlog)))]
            else:
                try:
                    # Read ahead a whole batch: what credits cannot take yet waits in the
                    # backlog (still in our PEL, still QUEUED) instead of costing a round
                    # trip per freed slot.
                    entries = await self.store.read_queue(
                        count=self.settings.batch_size, block_ms=1000
                    )
                except StoreUnavailable as exc:
                    logger.warning("cannot read the queue: %s", exc)
                    await asyncio.sleep(1)
                    continue
            if entries:
                await self._dispatch(entries)
            self._update_credit()

    async def _read_children(self, want: int) -> list[QueueEntry]:
        # Cleared before the read, not after it: a CALL that queues children while the
        # read is in flight sets the hint again, and clearing it afterwards lost that.
        # Then, with every slot held by parents waiting on those children, the feed
        # only ever tried the parents in its backlog: a CI run hung so for 2 minutes.
        self._children_queued = False
        try:
            entries = await self.store.read_queue(count=want, block_ms=None, nested=True)
        except StoreUnavailable as exc:
            logger.warning("cannot read the nested queue: %s", exc)
            self._children_queued = True
            return []
        if len(entries) == want:  # maybe more
            self._children_queued = True
        return entries

    async def _dispatch(self, entries: list[QueueEntry]) -> None:
        functions = await self._function_code({e.function_id for e in entries})
        missing: list[Outcome] = []
        unsent: list[QueueEntry] = []
        # The TASKs of this pass, per worker, sent together at its end (see _send_tasks).
        sending: dict[WorkerState, list[Sending]] = {}
        for entry in entries:
            function = functions.get(entry.function_id)
            if function is None:
                logger.info("task %s: function %s was deleted; failing it",
                            entry.task_id, entry.function_id)  # fmt: skip
                missing.append(outcomes.function_missing(entry))
                metrics.ended(entry.function_id, "function_missing").inc()
                continue
            if entry.payload is None:
                logger.error("task %s: its arguments are gone from the store; failing it",
                             entry.task_id)  # fmt: skip
                missing.append(outcomes.arguments_lost(entry))
                metrics.ended(entry.function_id, "arguments_lost").inc()
                continue
            futures: dict[str, bytes] = {}
            if entry.depends_on:
                # What is assigned goes out before anything else can run (and, say,
                # forget its worker): no await between a task's assignment and its send.
                await self._send_tasks(sending, unsent)
                found = await self._dependency_results(entry)
                if found is None:
                    unsent.append(entry)
                    continue
                if isinstance(found, str):
                    missing.append(outcomes.dependency_failed(entry, found))
                    metrics.ended(entry.function_id, "dependency_failed").inc()
                    continue
                futures = found
            worker = self.registry.choose(top_level=entry.depth == 0)
            if worker is None:
                self._top_level_held |= entry.depth == 0
                unsent.append(entry)
                continue
            sending.setdefault(worker, []).append(self._task(worker, entry, function, futures))
        await self._send_tasks(sending, unsent)
        self._backlog.extendleft(reversed(unsent))
        if missing:
            self._ended += missing
            self._to_write.set()

    def _mark_running(self, entry: QueueEntry, worker_id: str) -> None:
        """Mark an attempt RUNNING, off the critical path and a little later: start.lua
        only moves a task still QUEUED at that attempt, so it cannot race a commit; a
        crash before it lands leaves the task QUEUED in the PEL, which recovery handles.
        Deferred by _START_WRITE_DELAY_S, so that a task that ends sooner needs no write
        of its own: its end records the start (a round trip of three per W1 call)."""
        self._starts.append((entry.task_id, entry.attempt, worker_id, now_ms()))
        if self._start_write is None:
            write = self._to_write.set
            self._start_write = asyncio.get_running_loop().call_later(_START_WRITE_DELAY_S, write)

    async def _dependency_results(self, entry: QueueEntry) -> dict[str, bytes] | str | None:
        """The results a task takes as arguments (futures), why it cannot run, or None
        if the store cannot be read now (the task goes back to the backlog)."""
        try:
            return await self.store.dependency_results(
                entry.depends_on, most_bytes=MAX_DEPENDENCY_BYTES
            )
        except StoreUnavailable as exc:
            logger.warning("cannot read the dependencies of task %s: %s", entry.task_id, exc)
            return None

    def _task(
        self,
        worker: WorkerState,
        entry: QueueEntry,
        function: FunctionCode,
        futures: dict[str, bytes],
    ) -> Sending:
        """Assign an attempt to a worker; its TASK, to send."""
        header: dict = {
            "task_id": entry.task_id,
            "attempt": entry.attempt,
            "function_id": entry.function_id,
            "deadline_s": entry.deadline_s,
            "tenant": entry.tenant,  # the worker runs it in a slot only this tenant used
        }
        if entry.depth:
            header["depth"] = entry.depth
        prefetched = len(worker.tasks) >= worker.slots
        if prefetched:
            header["prefetched"] = True
        if function.env:
            header["env"] = [list(function.env.requirements), list(function.env.bundles)]
        sources = [function.sources] if function.sources else []
        if futures:  # after the sources frame (empty or not): the results, in header order
            header["futures"] = list(futures)
            sources = [function.sources, *futures.values()]
        assert entry.payload is not None  # _dispatch fails a task whose arguments are gone
        sent = time.monotonic()
        # A function with an environment may first have to install it.
        deadline_at = math.inf if prefetched else self._deadline_at(entry, sent, bool(function.env))
        flight = InFlight(entry, worker.worker_id, deadline_at, sent, prefetched)
        self.registry.assign(worker, flight)
        return Sending(flight, header, [function.payload, entry.payload, *sources])

    async def _send_tasks(
        self, sending: dict[WorkerState, list[Sending]], unsent: list[QueueEntry]
    ) -> None:
        """Send each worker its TASKs, in one BATCH if it takes them: one send and one
        wake-up per worker and pass instead of one per task (a third of the
        dispatcher's CPU per task in pull mode went to ZeroMQ sends). A worker found
        gone is forgotten: what it was being sent goes back to the backlog, what it
        held before back to the queue."""
        assert self._router is not None
        held_by_the_gone: list[QueueEntry] = []
        for worker, tasks in sending.items():
            parts = [(task.header, task.blobs) for task in tasks]
            if worker.batches:
                messages = [wire.pack_batch(wire.Command.TASK, parts)]
            else:
                messages = [wire.pack(wire.Command.TASK, h, *blobs) for h, blobs in parts]
            try:
                for message in messages:
                    self._router.send([worker.identity, *message])
            except (zmq.ZMQError, local_link.PeerGone) as exc:  # the worker's link is gone
                logger.warning("worker %s unreachable (%s) sending %d tasks; forgetting it",
                               worker.worker_id, exc, len(tasks))  # fmt: skip
                these = {id(task.flight) for task in tasks}
                for flight in self.registry.remove(worker.identity):
                    if id(flight) in these:
                        unsent.append(flight.entry)
                    else:
                        held_by_the_gone.append(flight.entry)
                continue
            now = now_ms()
            for task in tasks:
                entry = task.flight.entry
                if not task.flight.prefetched:  # else it is marked RUNNING once it STARTED
                    self._mark_running(entry, worker.worker_id)
                metrics.started(entry.function_id).inc()
                # A stream entry's id starts with the ms it was added (submitted or re-queued).
                queued_ms = int(entry.entry_id.split("-", 1)[0])
                metrics.DISPATCH_LATENCY.observe(max(now - queued_ms, 0) / 1000)
        sending.clear()
        for entry in held_by_the_gone:  # only now: awaiting, other workers' TASKs unsent
            await self._requeue(entry, "its worker became unreachable")

    def _deadline_at(self, entry: QueueEntry, now: float, installs: bool = False) -> float:
        """When the dispatcher itself ends an attempt that started at `now` (plus time
        to install an environment if it `installs`)."""
        deadline_at = now + entry.deadline_s + self.settings.deadline_grace_s
        return deadline_at + (self.settings.env_install_allowance_s if installs else 0)

    def _prefetched_started(self, worker: WorkerState, flight: InFlight) -> None:
        """A prefetched attempt took a slot (its environment is ready by then): mark it
        RUNNING and start its deadline."""
        deadline_at = self._deadline_at(flight.entry, time.monotonic())
        self.registry.started(worker, flight, deadline_at)
        self._mark_running(flight.entry, worker.worker_id)

    async def _function_code(self, ids: set[str]) -> dict[str, FunctionCode | None]:
        missing = [i for i in ids if i not in self._functions]
        if missing:
            fetched = await self._retrying(lambda: self.store.function_code(missing))
            for function_id, code in fetched.items():
                if code is not None:
                    self._functions[function_id] = code
            while len(self._functions) > _FUNCTION_CACHE_SIZE:
                self._functions.popitem(last=False)
        return {i: self._functions.get(i) for i in ids}

    # -- serve: workers -> store ---------------------------------------------------------

    async def _serve(self) -> None:
        assert self._router is not None
        while not self._stopping:
            await self._router.readable()
            batch = []
            while len(batch) < _MAX_BATCH and (message := self._receive()) is not None:
                batch.append(message)
            if not batch:
                continue
            ended: list[Outcome] = []
            lost: list[tuple[QueueEntry, str]] = []
            for frames, key in batch:
                await self._handle(frames, key, ended, lost)
            for identity in self._resets:  # their HELLO re-claims what they still hold
                self._reply(identity, wire.Command.RESET)
            self._resets.clear()
            if self._fetches:
                fetches, self._fetches = self._fetches, []
                self._in_background(self._send_bundles(fetches))
            self._top_level_held = False  # results may have made room: try again
            self._update_credit()  # freed slots get work while the outcomes commit
            self._ended += ended
            self._lost += lost
            for worker in self._reporting:
                worker.handed_seq = worker.next_seq - 1
                self._unacked[worker.identity] = worker
            self._reporting.clear()
            self._to_write.set()

    def _receive(self) -> tuple[list[bytes], str] | None:
        """A message's frames and the CURVE key its sender authenticated with ("" on a
        plain link); None if none is waiting."""
        assert self._router is not None
        if self._auth is None:
            frames = self._router.receive(copy=True)
            return None if frames is None else (frames, "")
        parts = self._router.receive(copy=False)
        if parts is None:
            return None
        key = parts[1].get("User-Id") if len(parts) > 1 else ""
        return [p.bytes for p in parts], key

    async def _handle(
        self,
        frames: list[bytes],
        key: str,
        ended: list[Outcome],
        lost: list[tuple[QueueEntry, str]],
    ) -> None:
        identity = frames[0]
        try:
            msg = wire.unpack(frames[1:])
            worker = self.registry.workers.get(identity)
            if worker is not None and worker.key != key:
                # A worker id belongs to the key that registered it: no take-over.
                logger.warning("dropped a message for worker %s sent with another key",
                               worker.worker_id)  # fmt: skip
                return
            if msg.command == wire.Command.HELLO:
                await self._hello(identity, key, msg.header, lost)
            elif worker is None:
                for part in msg.messages():
                    if part.command == wire.Command.RESULT:
                        self._result_of_orphan(part, ended, lost)
                if msg.command != wire.Command.BYE:
                    self._reply(identity, wire.Command.RESET)
            else:
                self.registry.seen(worker, time.monotonic())
                for part in msg.messages():
                    self._from_worker(worker, part, ended, lost)
        except (ProtocolError, KeyError, TypeError, ValueError) as exc:
            logger.warning("dropped a message from %r: %s", identity[:64], exc)

    def _from_worker(
        self,
        worker: WorkerState,
        msg: wire.Message,
        ended: list[Outcome],
        lost: list[tuple[QueueEntry, str]],
    ) -> None:
        if msg.command == wire.Command.READY:
            if self.settings.mode != DispatchMode.PUSH:
                self.registry.grant(worker, int(msg.header["credits"]))
        elif msg.command == wire.Command.RESULT:
            seq = msg.header["seq"]
            if seq > worker.next_seq:  # results were lost in between: start over
                logger.warning("worker %s skipped results %d-%d: asking it to register again",
                               worker.worker_id, worker.next_seq, seq - 1)  # fmt: skip
                self._resets.append(worker.identity)
                return
            worker.next_seq = max(worker.next_seq, seq + 1)
            worker.unacked_bytes += sum(map(len, msg.blobs))
            self._reporting.append(worker)
            task_id, attempt = msg.header["task_id"], msg.header["attempt"]
            flight = worker.tasks.get(task_id)
            held = flight is not None and flight.entry.attempt == attempt
            if held:
                self.registry.release(worker, task_id)
            self.registry.grant(worker, 1)  # the slot is free again, whatever it ran
            if held:
                assert flight is not None
                metrics.RUN_TIME.observe(time.monotonic() - flight.sent_at)
                self._outcome(flight.entry, msg, ended, lost)
            elif not self._result_of_orphan(msg, ended, lost):
                logger.info("ignored a result for %s from %s, which does not hold it",
                            task_id, worker.worker_id)  # fmt: skip
            self._slots_took(worker, msg.header.get("started", ()))
        elif msg.command == wire.Command.STARTED:
            self._slots_took(worker, msg.header["tasks"])
        elif msg.command == wire.Command.RETURN:
            why = "its worker drains" if worker.draining else "recalled for a free slot"
            for task_id, attempt in msg.header["tasks"]:
                flight = worker.tasks.get(task_id)
                if flight is not None and flight.entry.attempt == attempt:
                    self.registry.release(worker, task_id)
                    self.registry.grant(worker, 1)  # none while it drains
                    lost.append((flight.entry, f"{why}: given back unstarted"))
        elif msg.command == wire.Command.LOG:
            self._output(worker, msg)
        elif msg.command == wire.Command.FETCH:
            self._fetches.append((worker.identity, msg.header["digest"]))
        elif msg.command == wire.Command.CALL:
            self._in_background(self._call(worker, msg))
        elif msg.command == wire.Command.INLINE:
            self._in_background(self._inline(worker, msg))
        elif msg.command == wire.Command.AWAIT:
            waiter = (worker.identity, msg.header["call_id"])
            self.waiters.add(msg.header["task_ids"], waiter)
            self._in_background(self._await(msg.header["task_ids"]))
        elif msg.command == wire.Command.SLOTS:
            # Spare slots while parents wait on nested calls (or their retirement).
            delta = msg.header["slots"] - worker.slots
            worker.slots = msg.header["slots"]
            self.registry.grant(worker, delta if self.settings.mode == DispatchMode.PUSH else 0)
        elif msg.command == wire.Command.DRAIN:
            logger.info("worker %s drains: no more work for it", worker.worker_id)
            worker.draining = True
            self.registry.grant(worker, 0)
        elif msg.command == wire.Command.BYE:
            logger.info("worker %s left", worker.worker_id)
            self.waiters.forget(worker.identity)
            for flight in self.registry.remove(worker.identity):
                lost.append((flight.entry, "its worker shut down"))
        elif msg.command != wire.Command.HEARTBEAT:
            raise ProtocolError(f"unexpected {msg.command.name} from a worker")

    def _slots_took(self, worker: WorkerState, tasks: Iterable[list]) -> None:
        """The worker's slots took these prefetched attempts (STARTED, or with a RESULT)."""
        for task_id, attempt in tasks:
            flight = worker.tasks.get(task_id)
            if flight is not None and flight.entry.attempt == attempt and flight.prefetched:
                self._prefetched_started(worker, flight)

    def _output(self, worker: WorkerState, msg: wire.Message) -> None:
        """Store a running attempt's output; a worker writes only to tasks it holds."""
        task_id, attempt = msg.header["task_id"], msg.header["attempt"]
        flight = worker.tasks.get(task_id)
        entry = flight.entry if flight is not None else self._orphans.get(task_id)
        if entry is None or entry.attempt != attempt:
            logger.info("task %s: dropped output of attempt %d from %s, which does not hold it",
                        task_id, attempt, worker.worker_id)  # fmt: skip
            return
        self._logs.append((task_id, msg.blobs[0]))
        metrics.LOG_BYTES.inc(len(msg.blobs[0]))

    @staticmethod
    def _outcome(
        entry: QueueEntry,
        msg: wire.Message,
        committed: list[Outcome],
        lost: list[tuple[QueueEntry, str]],
    ) -> None:
        metrics.ended(entry.function_id, msg.header["outcome"]).inc()
        result = outcomes.from_result(entry, msg.header, msg.blobs)
        if isinstance(result, Outcome):
            committed.append(result)
        else:
            lost.append((entry, result))

    def _result_of_orphan(
        self, msg: wire.Message, ended: list[Outcome], lost: list[tuple[QueueEntry, str]]
    ) -> bool:
        """A result for an attempt held before a restart (sent before its worker's
        HELLO, or re-sent after it): still the right result, so commit it."""
        entry = self._orphans.get(msg.header["task_id"])
        if entry is None or entry.attempt != msg.header["attempt"]:
            return False
        del self._orphans[entry.task_id]
        self._outcome(entry, msg, ended, lost)
        return True

    async def _hello(
        self, identity: bytes, key: str, header: dict, lost: list[tuple[QueueEntry, str]]
    ) -> None:
        slots = header["slots"]
        reported = {t: a for t, a in header.get("running", [])}
        previous = self.registry.remove(identity)
        worker = self.registry.add(identity, slots=slots, now=time.monotonic(),
                                   base_slots=header.get("base_slots"))  # fmt: skip
        worker.key = key
        worker.next_seq = header.get("seq", 1)
        worker.prefetch = header.get("prefetch", 0)
        worker.batches = header.get("batches", False)
        queued = {t: a for t, a in header.get("queued", [])}  # prefetched, not started
        for flight in previous:
            task_id = flight.entry.task_id
            if reported.get(task_id) != flight.entry.attempt:
                lost.append((flight.entry, "its worker restarted without it"))
                continue
            self.registry.adopt(worker, flight)
            if flight.prefetched and queued.get(task_id) != flight.entry.attempt:
                self._prefetched_started(worker, flight)  # its STARTED was lost
        for task_id, attempt in reported.items():
            orphan = self._orphans.get(task_id)
            if orphan is not None and orphan.attempt == attempt:
                del self._orphans[task_id]
                waits = queued.get(task_id) == attempt
                deadline_at = math.inf if waits else self._deadline_at(orphan, time.monotonic())
                flight = InFlight(orphan, worker.worker_id, deadline_at, prefetched=waits)
                self.registry.adopt(worker, flight)
        # Claimed but not held: its entry is gone (the task ended, was cancelled, or
        # went back to the queue), so no result of it can commit. Kill it, before
        # this worker can be sent anything, rather than let it hold a slot; a claim
        # that is only an unacknowledged result is not running and is ignored.
        stale = {t: a for t, a in reported.items() if t not in worker.tasks}
        if stale:
            logger.info("worker %s runs %d attempts no longer held: cancelling them",
                        worker.worker_id, len(stale))  # fmt: skip
        for task_id, attempt in stale.items():
            self._reply(identity, wire.Command.CANCEL, {"task_id": task_id, "attempt": attempt})
        # Held before a restart by this very worker, which no longer claims them: it
        # never got them, or they ended and were committed. Either way, not running.
        unclaimed = [t for t, w in self._orphan_holders.items()
                     if w == worker.worker_id and t in self._orphans]  # fmt: skip
        for task_id in unclaimed:
            lost.append((self._orphans.pop(task_id), "its worker registered without it"))
        if self.settings.mode == DispatchMode.PUSH:
            self.registry.grant(worker, slots + worker.prefetch)
        logger.info("worker %s joined with %d slots, running %d",
                    worker.worker_id, slots, len(worker.tasks))  # fmt: skip
        welcome = {"heartbeat_interval_s": self.settings.heartbeat_interval_s, "batches": True}
        self._reply(identity, wire.Command.WELCOME, welcome)

    def _in_background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- nested calls -----------------------------------------------------------------------

    async def _call(self, worker: WorkerState, msg: wire.Message) -> None:
        """A running task calls a function: queue the children on the nested stream,
        with the parent's remaining time as their deadline at most. A call that
        awaits its children is answered by ENDED, or by CALLED if it failed."""
        h = msg.header
        waiter = (worker.identity, h["call_id"])
        if h.get("await"):  # before they are queued: no end can slip past
            self.waiters.add(h["task_ids"], waiter)
        queued = asyncio.Event()
        self._queuing.update(dict.fromkeys(h["task_ids"], queued))
        try:
            await self._queued(h.get("depends_on", ()))  # futures among the arguments
            error = await self._queue_call(worker, msg)
        finally:
            for task_id in h["task_ids"]:
                if self._queuing.get(task_id) is queued:
                    del self._queuing[task_id]
            queued.set()
        if error:
            self.waiters.refused(h["task_ids"], error)
        if error and h.get("await"):
            self.waiters.discard(h["task_ids"], waiter)
        if error or not h.get("await"):
            header = {"call_id": h["call_id"], **({"error": error} if error else {})}
            self._reply(worker.identity, wire.Command.CALLED, header)
        elif h.get("again") or h["attempt"] > 1:
            # Asked again after this worker was away, or by a parent's re-run that
            # found its children: some may have ended already, and will not end again.
            await self._answer_ended(h["task_ids"])

    async def _queue_call(self, worker: WorkerState, msg: wire.Message) -> str:
        """Queue a CALL's children; "" or why not."""
        h = msg.header
        flight = worker.tasks.get(h["parent"])
        depth = flight.entry.depth + 1 if flight is not None else 0
        error = ""
        if flight is None or flight.entry.attempt != h["attempt"] or flight.prefetched:
            error = f"task {h['parent']} is not running on this worker"
        elif len(msg.blobs) != len(h["task_ids"]):
            error = f"{len(h['task_ids'])} task ids for {len(msg.blobs)} payloads"
        elif depth > self.settings.max_call_depth:
            error = (f"nested calls may go {self.settings.max_call_depth} deep "
                     f"(FAAS_MAX_CALL_DEPTH); this one would be {depth} deep")  # fmt: skip
        else:
            left = flight.deadline_at - time.monotonic() - self.settings.deadline_grace_s
            deadline = min(h.get("deadline_s", left), left)
            if deadline < 0.001:
                error = f"task {h['parent']} has no time left for a nested call"
            else:
                error = await self._submit_children(
                    h, msg.blobs, deadline, depth, flight.entry.tenant
                )
        return error

    async def _inline(self, worker: WorkerState, msg: wire.Message) -> None:
        """May a running task call this function in its own slot? Only its tenant's
        functions (as for CALL), and only those that run in the caller's environment
        (else the call is a task: not an error)."""
        h = msg.header
        flight = worker.tasks.get(h.get("parent", ""))
        answer: dict[str, Any] = {"call_id": h["call_id"], "inline": False}
        code: list[bytes] = []
        if flight is None or flight.entry.attempt != h.get("attempt"):
            answer["error"] = f"task {h.get('parent')} is not running on this worker"
        else:
            function_id = h.get("function_id", "")
            found = await self._function_code({function_id, flight.entry.function_id})
            function, caller = found[function_id], found[flight.entry.function_id]
            if function is None or function.tenant != flight.entry.tenant:
                answer["error"] = f"function {function_id} not found"
            elif caller is None or function.env != caller.env:
                answer["why"] = "it runs in another environment than its caller"
            else:
                answer["inline"] = True
                code = [function.payload, function.sources]
        self._reply(worker.identity, wire.Command.INLINE, answer, *code)

    async def _submit_children(
        self, h: dict[str, Any], payloads: list[bytes], deadline_s: float, depth: int,
        tenant: str,
    ) -> str:  # fmt: skip
        """Queue them, as the parent's tenant (whose functions only it may call);
        returns "" or why they were not queued. The tenant's quota applies to the
        tasks it submits through the gateway, not to these."""
        submit = functools.partial(
            self.store.submit, h["function_id"], list(zip(h["task_ids"], payloads, strict=True)),
            deadline_s=deadline_s, depth=depth, tenant=tenant, max_unfinished=2**62,
            max_attempts=h.get("max_attempts", self.settings.nested_max_attempts),
            depends_on=h.get("depends_on", ()),
        )  # fmt: skip
        try:
            await self._retrying(submit)
        except FunctionNotFound:
            return f"function {h['function_id']} not found"
        except TaskNotFound as exc:
            return f"{exc} (a future among the arguments)"
        self._children_queued = True
        self._update_credit()
        self._children.setdefault(h["parent"], []).extend(h["task_ids"])
        return ""

    async def _await(self, task_ids: list[str]) -> None:
        """Answer what has ended of `task_ids`, once the CALLs queuing them (if still at
        it) are done: a slot's submit does not wait for its CALL, and a CALL that
        awaits is waited on before it is queued. Read earlier, they would not exist."""
        await self._queued(task_ids)
        await self._answer_ended(task_ids)

    async def _queued(self, task_ids: Iterable[str]) -> None:
        """Return once no CALL is queuing any of `task_ids` (submits from a slot go
        out without waiting for their CALL: what follows them must wait here)."""
        for queued in {self._queuing[t] for t in task_ids if t in self._queuing}:
            await queued.wait()

    async def _answer_ended(self, task_ids: list[str]) -> None:
        """Answer the waiters of those of `task_ids` that have ended (or are unknown)."""
        records = await self._retrying(lambda: self.store.get_tasks(task_ids))
        for task_id, record in zip(task_ids, records, strict=True):
            if record is None:
                self.waiters.ended(task_id, ("", "", self.waiters.refusal(task_id), b""))
            elif record.status.terminal:
                kind = record.error_kind.value if record.error_kind else ""
                ended = (record.status.value, kind, record.error or "", record.result or b"")
                self.waiters.ended(task_id, ended)
        self._send_answers()

    def _send_answers(self) -> None:
        for identity, header, blobs in self.waiters.take_answers():
            self._reply(identity, wire.Command.ENDED, header, *blobs)

    def _reply(
        self, identity: bytes, command: wire.Command, header: dict | None = None, *blobs: bytes
    ) -> None:
        assert self._router is not None
        try:
            self._router.send([identity, *wire.pack(command, header, *blobs)])
        except (zmq.ZMQError, local_link.PeerGone):
            pass  # the peer is gone; it will register again when it comes back

    async def _send_bundles(self, fetches: list[tuple[bytes, str]]) -> None:
        """Answer FETCHes off the serve loop: a bundle may be megabytes."""
        for identity, digest in fetches:
            data = await self._retrying(lambda d=digest: self.store.get_bundle(d))  # type: ignore[misc]
            header = {"digest": digest, "found": data is not None}
            self._reply(identity, wire.Command.BUNDLE, header, data or b"")

    async def _write(self) -> None:
        while not self._stopping:
            await self._to_write.wait()
            if not self._stopping:  # at a stop, _shutdown flushes what is left
                await self._flush()

    async def _flush(self) -> None:
        self._to_write.clear()
        if self._start_write is not None:
            self._start_write.cancel()
            self._start_write = None
        starts, ended, lost, logs = self._starts, self._ended, self._lost, self._logs
        self._starts, self._ended, self._lost, self._logs = [], [], [], []
        if starts and ended:  # an end commits its attempt's start with it
            pending = {(t, a): (w, ms) for t, a, w, ms in starts}
            ended = [self._with_start(o, pending.pop((o.task_id, o.attempt), None))
                     for o in ended]  # fmt: skip
            starts = [s for s in starts if (s[0], s[1]) in pending]
        # Every result handed over so far is in this batch or an earlier one: once it
        # commits, workers may forget them (the acknowledgement rides on heartbeats).
        # Only the workers that reported since the last flush: O(reporters), not O(workers).
        received = [(w, w.handed_seq) for w in self._unacked.values()
                    if self.registry.workers.get(w.identity) is w]  # fmt: skip
        self._unacked.clear()
        if starts:
            triples = [(t, a, w) for t, a, w, _ in starts]
            flags = await self._retrying(lambda: self.store.mark_started(triples))
            # Sent while its cancel was on its way here: kill it now.
            late = [t for (t, _, _), flag in zip(triples, flags, strict=True) if flag < 0]
            if late:
                await self._cancelled(late)
        # Output goes before the ends (in their round trip, if any): a task seen ended
        # has all its output stored.
        if logs and not ended:
            await self._retrying(lambda: self.store.append_logs(logs))
        await self._settle(ended, lost, logs if ended else ())
        for worker, seq in received:
            if seq > worker.acked_seq:
                worker.acked_seq = seq
                # A draining worker waits for this before leaving; one that sent large
                # results holds them until told (see _ACK_AT_ONCE_BYTES).
                if worker.draining or worker.unacked_bytes >= _ACK_AT_ONCE_BYTES:
                    self._ack(worker)

    def _ack(self, worker: WorkerState) -> None:
        """Tell `worker` which of its results are committed (a HEARTBEAT)."""
        worker.unacked_bytes = 0
        self._reply(worker.identity, wire.Command.HEARTBEAT, {"acked": worker.acked_seq})

    async def _write_starts_of(self, lost: list[tuple[QueueEntry, str]]) -> None:
        """A lost attempt that started spends an attempt when re-queued (requeue.lua
        counts RUNNING ones only): its deferred start is written first."""
        keys = {(entry.task_id, entry.attempt) for entry, _ in lost}
        due = [(t, a, w) for t, a, w, _ in self._starts if (t, a) in keys]
        if due:
            self._starts = [s for s in self._starts if (s[0], s[1]) not in keys]
            await self._retrying(lambda: self.store.mark_started(due))

    @staticmethod
    def _with_start(outcome: Outcome, start: tuple[str, int] | None) -> Outcome:
        if start is None:
            return outcome
        return dataclasses.replace(outcome, worker_id=start[0], started_ms=start[1])

    async def _settle(
        self,
        ended: list[Outcome],
        lost: list[tuple[QueueEntry, str]],
        logs: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        if lost and self._starts:
            await self._write_starts_of(lost)
        if ended:
            committed = await self._retrying(lambda: self.store.finish(ended, logs))
            for outcome, done in zip(ended, committed, strict=True):
                self._children.pop(outcome.task_id, None)
                if done:
                    self.ended.add(outcome.status.value)
                    if outcome.task_id in self.waiters:
                        kind = outcome.error_kind.value if outcome.error_kind else ""
                        self.waiters.ended(
                            outcome.task_id,
                            (outcome.status.value, kind, outcome.error, outcome.result),
                        )
            self._send_answers()
            stale = committed.count(False)
            if stale:
                logger.info("%d late or duplicate results were not committed", stale)
        for entry, reason in lost:
            await self._requeue(entry, reason)

    async def _requeue(self, entry: QueueEntry, reason: str) -> None:
        error = f"WorkerFailure: {reason} (attempt {entry.attempt}, no attempts left)"
        verdict = await self._retrying(
            lambda: self.store.requeue(
                entry, error=error, failure=outcomes.failure(RuntimeError(error))
            )
        )
        logger.info("task %s attempt %d: %s; %s", entry.task_id, entry.attempt, reason, verdict)
        if verdict == "requeued" and entry.depth > 0:
            self._children_queued = True
        if verdict == "failed":
            self.ended.add(TaskStatus.FAILED.value)
            if entry.task_id in self.waiters:
                await self._answer_ended([entry.task_id])
        metrics.REQUEUED.labels(verdict).inc()

    # -- housekeeping ---------------------------------------------------------------------

    async def _housekeep(self) -> None:
        # Liveness and deadlines are checked on a fine tick, so a dead worker is found
        # within ~0.1 s of its liveness timeout; heartbeats and the lease on their own.
        tick = min(0.1, self.settings.heartbeat_interval_s / 2)
        renew_every = min(self.settings.heartbeat_interval_s, self.settings.lease_ttl_s / 3)
        last_beat = last_depth = 0.0
        while not self._stopping:
            await asyncio.sleep(tick)
            now = self.last_tick = time.monotonic()
            metrics.WORKERS.set(len(self.registry.workers))
            metrics.RUNNING.set(sum(len(w.tasks) for w in self.registry.workers.values()))
            if self.settings.metrics_port and now - last_depth >= _QUEUE_DEPTH_EVERY_S:
                last_depth = now
                with contextlib.suppress(StoreUnavailable):
                    metrics.QUEUED.set((await self.store.queue_depth())[0])
            if now - last_beat >= renew_every:
                last_beat = now
                await self._renew_lease()
                await self._publish_status(ttl_s=renew_every * 3)
                if waited := self.waiters.task_ids():  # ends committed elsewhere
                    self._in_background(self._await(waited))
                for worker in list(self.registry.workers.values()):
                    self._ack(worker)
            lost: list[tuple[QueueEntry, str]] = []
            ended: list[Outcome] = []
            for worker in self.registry.silent_since(now - self.settings.liveness_timeout_s):
                logger.warning("worker %s silent for %.1f s: declared dead",
                               worker.worker_id, now - worker.last_seen)  # fmt: skip
                for flight in self.registry.remove(worker.identity):
                    lost.append((flight.entry, f"worker {worker.worker_id} stopped responding"))
            for worker, flight in self.registry.overdue(now):
                self.registry.release(worker, flight.entry.task_id)
                logger.warning("task %s attempt %d: worker %s never reported its deadline; "
                               "ending it", flight.entry.task_id, flight.entry.attempt,
                               worker.worker_id)  # fmt: skip
                ended.append(outcomes.overdue(flight.entry))
                metrics.ended(flight.entry.function_id, "deadline").inc()
            if self._orphans and now >= self._orphans_until:
                lost += [(e, "no worker reported it after a dispatcher restart")
                         for e in self._orphans.values()]  # fmt: skip
                self._orphans.clear()
                self._orphan_holders.clear()
            await self._settle(ended, lost)
            self._recall_prefetched(now)
            self._update_credit()

    def _recall_prefetched(self, now: float) -> None:
        """A slot is free while tasks wait prefetched behind running ones elsewhere
        (sent before it freed, or before its worker joined): ask for them back, so
        they run there instead of after what runs before them. The scan over workers
        happens only while the best worker has an idle slot, i.e. not under load."""
        best = self.registry.choose()
        free = best.idle_slots() if best is not None and not self._backlog else 0
        for worker in self.registry.workers.values():
            if free <= 0:
                return
            if worker is best or not worker.prefetched:
                continue
            due = []
            for flight in worker.waiting.values():  # oldest first: stop at a young one
                if len(due) == free or now - flight.sent_at < _RECALL_AFTER_S:
                    break
                if not flight.recalled:
                    due.append(flight)
            if due:
                for flight in due:
                    flight.recalled = True
                tasks = [[f.entry.task_id, f.entry.attempt] for f in due]
                self._reply(worker.identity, wire.Command.RECALL, {"tasks": tasks})
                free -= len(due)

    async def _publish_status(self, *, ttl_s: float) -> None:
        """The view behind /v1/workers and /v1/stats; skipped if Redis is away."""
        view = status.snapshot(
            instance_id=self.instance_id,
            mode=self.settings.mode.value,
            registry=self.registry,
            ended=self.ended,
            backlog=len(self._backlog),
        )
        try:
            await self.store.put_status(view, ttl_s=ttl_s)
        except StoreUnavailable as exc:
            logger.debug("status not published: %s", exc)

    async def _watch(
        self,
        what: str,
        read: Callable[..., Awaitable[T | None]],
        handle: Callable[[T], Awaitable[None]],
    ) -> None:
        """Block on a list in the store that other components push to, and handle
        what arrives."""
        while not self._stopping:
            try:
                item = await read(timeout_s=1.0)
            except StoreUnavailable as exc:
                logger.warning("cannot read %s: %s", what, exc)
                await asyncio.sleep(1)
                continue
            if item:
                try:
                    await handle(item)
                except Exception:  # one bad report must not stop the watch
                    logger.exception("handling %s failed", what)

    async def _worker_lost(self, report: tuple[str, int]) -> None:
        """Reports from outside (the Kubernetes controller sees a pod die before the
        heartbeat timeout does): forget the worker and re-queue its attempts now."""
        worker_id, reported_ms = report
        worker = self.registry.workers.get(worker_id.encode())
        if worker is None or reported_ms < worker.joined_at_ms:
            logger.info("ignored a loss report for %s (unknown, or joined since)", worker_id)
            return
        logger.warning("worker %s reported lost: re-queuing its %d tasks",
                       worker_id, len(worker.tasks))  # fmt: skip
        lost = [(f.entry, f"worker {worker_id} was reported lost")
                for f in self.registry.remove(worker.identity)]  # fmt: skip
        await self._settle([], lost)
        self._update_credit()

    async def _cancelled(self, task_ids: list[str]) -> None:
        """Tasks the store already ended CANCELLED (cancel.lua also deleted their queue
        entries): drop what was read ahead, and have workers kill what runs. The
        attempt stays in flight until its worker reports it (outcome `cancelled`,
        re-queued as lost: requeue.lua finds the task ended and only drops it), so
        the slot is not given new work before it is free."""
        cancelled = set(task_ids)
        if children := [c for t in cancelled for c in self._children.pop(t, ())]:
            # Cancelled with their parent: they push notices of their own, so
            # grandchildren follow.
            error = "CancelledError: its parent task was cancelled"
            failure = outcomes.failure(CancelledError(error))
            await self._retrying(lambda: self.store.cancel(children, failure=failure, error=error))
        if self._backlog:
            self._backlog = deque(e for e in self._backlog if e.task_id not in cancelled)
        for worker in list(self.registry.workers.values()):
            for task_id in cancelled.intersection(worker.tasks):
                attempt = worker.tasks[task_id].entry.attempt
                self._reply(
                    worker.identity, wire.Command.CANCEL, {"task_id": task_id, "attempt": attempt}
                )
        for task_id in cancelled.intersection(self._orphans):
            del self._orphans[task_id]  # a worker that claims it back is told to kill it
        logger.info("%d tasks cancelled", len(cancelled))

    async def _renew_lease(self) -> None:
        ttl = self.settings.lease_ttl_s
        try:
            if await self.store.renew_lease(self.instance_id, ttl):
                return
            # Expired (e.g. Redis restarted without it); take it back if nobody else did.
            if await self.store.acquire_lease(self.instance_id, ttl):
                logger.warning("lease had expired; re-acquired it")
                return
        except StoreUnavailable as exc:
            logger.warning("cannot renew the lease: %s", exc)
            return
        raise LeaseLost(f"dispatcher {await self.store.lease_holder()} took the lease")

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """Retry a store call while Redis is unreachable: an outcome must not be dropped."""
        delay = 0.1
        while True:
            try:
                return await call()
            except StoreUnavailable as exc:
                logger.warning("redis unavailable, retrying in %.1f s: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
