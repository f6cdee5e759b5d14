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
         claimed back.

Only the holder of the Redis lease runs these loops. Local mode is the same
machinery with one worker child process of its own, over ipc:// instead of TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import tempfile
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

import zmq
import zmq.asyncio
import zmq.auth.asyncio

from common import curve, wire
from common.errors import ProtocolError, StoreUnavailable
from common.models import DispatchMode, FunctionCode, TaskStatus
from common.store import Outcome, QueueEntry, Store
from dispatcher import outcomes
from dispatcher.local import LocalWorker
from dispatcher.registry import InFlight, Registry, WorkerState
from dispatcher.settings import DispatcherSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")
_FUNCTION_CACHE_SIZE = 1024
_MAX_BATCH = 1000
_STOP_WAIT_S = 5.0


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
        self._ipc_path: str | None = None
        self._functions: OrderedDict[str, FunctionCode] = OrderedDict()
        self._credit = asyncio.Event()
        self._context = zmq.asyncio.Context()
        self._socket: zmq.asyncio.Socket | None = None
        self._auth: zmq.auth.asyncio.AsyncioAuthenticator | None = None
        # Local mode's worker gets a key pair of its own, made at start.
        self._local_keys = curve.KeyPair.generate()
        self._server_keys = (
            curve.KeyPair.from_secret(settings.dispatcher_secret_key)
            if settings.dispatcher_secret_key
            else curve.KeyPair.generate()
            if settings.mode == DispatchMode.LOCAL
            else None
        )
        self._local_worker: LocalWorker | None = None
        # Writes waiting for the writer loop: whatever accumulates while one write is
        # in flight goes in the next, so under load they batch by themselves.
        self._starts: list[tuple[str, int, str]] = []
        self._ended: list[Outcome] = []
        self._lost: list[tuple[QueueEntry, str]] = []
        self._to_write = asyncio.Event()
        self._resets: list[bytes] = []  # workers to re-register after this batch
        self._fetches: list[tuple[bytes, str]] = []  # (worker, bundle digest) asked for
        self._background: set[asyncio.Task[None]] = set()
        self._reporting: list[WorkerState] = []  # workers that sent results in this batch
        self._unacked: dict[bytes, WorkerState] = {}  # reported since the last flush
        self.active = False  # holds the lease and dispatches
        self._stopping = False  # the loops end
        self._local_worker_leaving = False  # it drains: do not restart it
        self.last_tick = time.monotonic()  # the event loop's heartbeat, for /healthz

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
            if self.settings.mode == DispatchMode.LOCAL:
                assert self._server_keys is not None
                self._local_worker = LocalWorker(
                    endpoint=self.endpoint,
                    slots=self.settings.slots,
                    worker_id=f"local-{self.instance_id}",
                    secret_key=self._local_keys.secret,
                    server_key=self._server_keys.public,
                )
                self._local_worker.start()
            await self._run_loops(stop)
        finally:
            await self._shutdown()

    async def _run_loops(self, stop: asyncio.Event) -> None:
        coroutines = [
            self._feed(), self._serve(), self._write(), self._housekeep(),
            self._watch_lost_workers(),
        ]  # fmt: skip
        if self._local_worker is not None:
            coroutines.append(self._watch_local_worker(self._local_worker))
        loops = [asyncio.create_task(c) for c in coroutines]
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([*loops, stopper], return_when=asyncio.FIRST_COMPLETED)
        if stopper in done and self._local_worker is not None:
            # Drain our own worker while the loops still read its results and BYE,
            # so a task running at a graceful stop finishes instead of running again.
            self._local_worker_leaving = True
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
        sock = self._context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # an unreachable worker raises, not drops
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a reconnecting worker takes its identity back
        if self._server_keys is not None:
            allowed = curve.parse_keys(self.settings.worker_public_keys)
            if self.settings.mode == DispatchMode.LOCAL:
                allowed |= {self._local_keys.public}
            self._auth = curve.serve_securely(
                self._context, sock, self._server_keys.secret, allowed
            )
        else:
            logger.warning("the worker link is neither encrypted nor authenticated: set "
                           "FAAS_DISPATCHER_SECRET_KEY and FAAS_WORKER_PUBLIC_KEYS")  # fmt: skip
        if self.settings.mode == DispatchMode.LOCAL:
            path = os.path.join(tempfile.gettempdir(), f"faas-{self.instance_id}.sock")
            self.endpoint = f"ipc://{path}"
            self._ipc_path = path
            sock.bind(self.endpoint)
        else:
            sock.bind(f"tcp://{self.settings.bind_host}:{self.settings.dispatcher_port}")
            self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._socket = sock
        logger.info("dispatching in %s mode on %s", self.settings.mode, self.endpoint)

    async def _watch_local_worker(self, worker: LocalWorker) -> None:
        """Restart local mode's worker if it dies; its attempts go back at once."""
        while not self._stopping:
            await asyncio.sleep(0.2)
            code = worker.exit_code()
            if code is None or self._local_worker_leaving:
                continue
            logger.error("local worker exited with code %s; restarting it", code)
            gone = self.registry.remove(worker.worker_id.encode())
            await self._settle([], [(f.entry, "the local worker process died") for f in gone])
            self._update_credit()
            worker.start()

    async def _recover(self) -> None:
        """Attempts still in our PEL were held by a dispatcher that died. In local mode
        its slots died with it: re-queue them now. Remote workers may still be running
        them, or hold their unacknowledged results: each is re-queued when the worker
        the store names as running it registers without claiming it, or after
        `recovery_grace_s` if no worker claims it."""
        held: list[QueueEntry] = []
        while True:
            read = functools.partial(
                self.store.read_queue, count=_MAX_BATCH, block_ms=None, pending=True,
                after=held[-1].entry_id if held else "0",
            )  # fmt: skip
            batch = await self._retrying(read)
            if not batch:
                break
            held += batch
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
        if self._socket is not None:
            self._socket.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
        self._context.term()
        if self._ipc_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._ipc_path)
        try:
            await self.store.release_lease(self.instance_id)
        except StoreUnavailable:
            pass  # it expires by itself
        logger.info("dispatcher %s stopped", self.instance_id)

    # -- feed: queue -> workers ------------------------------------------------------------

    def _update_credit(self) -> None:
        if self.registry.credits() > 0:
            self._credit.set()
        else:
            self._credit.clear()

    async def _feed(self) -> None:
        while not self._stopping:
            await self._credit.wait()
            want = min(self.registry.credits(), self.settings.batch_size)
            if self._backlog:
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

    async def _dispatch(self, entries: list[QueueEntry]) -> None:
        functions = await self._function_code({e.function_id for e in entries})
        started: list[tuple[str, int, str]] = []
        missing: list[Outcome] = []
        unsent: list[QueueEntry] = []
        for entry in entries:
            function = functions.get(entry.function_id)
            if function is None:
                missing.append(outcomes.function_missing(entry))
                continue
            worker = self.registry.choose()
            if worker is None or not await self._send_task(worker, entry, function):
                unsent.append(entry)
                continue
            started.append((entry.task_id, entry.attempt, worker.worker_id))
        self._backlog.extendleft(reversed(unsent))
        # Off the critical path: start.lua only moves a task still QUEUED at that
        # attempt, so it cannot race a commit; a crash before it lands leaves the task
        # QUEUED in the PEL, which recovery handles.
        self._starts += started
        self._ended += missing
        self._to_write.set()

    async def _send_task(
        self, worker: WorkerState, entry: QueueEntry, function: FunctionCode
    ) -> bool:
        assert self._socket is not None
        header: dict = {
            "task_id": entry.task_id,
            "attempt": entry.attempt,
            "function_id": entry.function_id,
            "deadline_s": entry.deadline_s,
        }
        if function.env:
            header["env"] = [list(function.env.requirements), list(function.env.bundles)]
        task = wire.pack(wire.Command.TASK, header, function.payload, entry.payload)
        frames = [worker.identity, *task]
        try:
            await self._socket.send_multipart(frames, copy=False)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the worker's connection is gone
            logger.warning("worker %s unreachable (%s); forgetting it", worker.worker_id, exc)
            for flight in self.registry.remove(worker.identity):
                await self._requeue(flight.entry, "its worker became unreachable")
            return False
        deadline_at = time.monotonic() + entry.deadline_s + self.settings.deadline_grace_s
        if function.env:  # the worker may first have to install it
            deadline_at += self.settings.env_install_allowance_s
        self.registry.assign(worker, InFlight(entry, worker.worker_id, deadline_at))
        return True

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
        assert self._socket is not None
        while not self._stopping:
            batch = [await self._receive()]
            while len(batch) < _MAX_BATCH:
                try:
                    batch.append(await self._receive(zmq.NOBLOCK))
                except zmq.Again:
                    break
            ended: list[Outcome] = []
            lost: list[tuple[QueueEntry, str]] = []
            for frames, key in batch:
                await self._handle(frames, key, ended, lost)
            for identity in self._resets:  # their HELLO re-claims what they still hold
                await self._reply(identity, wire.Command.RESET)
            self._resets.clear()
            if self._fetches:
                fetches, self._fetches = self._fetches, []
                task = asyncio.create_task(self._send_bundles(fetches))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            self._update_credit()  # freed slots get work while the outcomes commit
            self._ended += ended
            self._lost += lost
            for worker in self._reporting:
                worker.handed_seq = worker.next_seq - 1
                self._unacked[worker.identity] = worker
            self._reporting.clear()
            self._to_write.set()

    async def _receive(self, flags: int = 0) -> tuple[list[bytes], str]:
        """A message's frames and the CURVE key its sender authenticated with ("" on a
        plain link)."""
        assert self._socket is not None
        if self._auth is None:
            return await self._socket.recv_multipart(flags, copy=True), ""
        parts = await self._socket.recv_multipart(flags, copy=False)
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
                if msg.command == wire.Command.RESULT:
                    self._result_of_orphan(msg, ended, lost)
                if msg.command != wire.Command.BYE:
                    await self._reply(identity, wire.Command.RESET)
            else:
                self.registry.seen(worker, time.monotonic())
                self._from_worker(worker, msg, ended, lost)
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
            self._reporting.append(worker)
            task_id, attempt = msg.header["task_id"], msg.header["attempt"]
            flight = worker.tasks.get(task_id)
            held = flight is not None and flight.entry.attempt == attempt
            if held:
                self.registry.release(worker, task_id)
            self.registry.grant(worker, 1)  # the slot is free again, whatever it ran
            if held:
                assert flight is not None
                self._outcome(flight.entry, msg, ended, lost)
            elif not self._result_of_orphan(msg, ended, lost):
                logger.info("ignored a result for %s from %s, which does not hold it",
                            task_id, worker.worker_id)  # fmt: skip
        elif msg.command == wire.Command.FETCH:
            self._fetches.append((worker.identity, msg.header["digest"]))
        elif msg.command == wire.Command.DRAIN:
            logger.info("worker %s drains: no more work for it", worker.worker_id)
            worker.draining = True
            self.registry.grant(worker, 0)
        elif msg.command == wire.Command.BYE:
            logger.info("worker %s left", worker.worker_id)
            for flight in self.registry.remove(worker.identity):
                lost.append((flight.entry, "its worker shut down"))
        elif msg.command != wire.Command.HEARTBEAT:
            raise ProtocolError(f"unexpected {msg.command.name} from a worker")

    @staticmethod
    def _outcome(
        entry: QueueEntry,
        msg: wire.Message,
        committed: list[Outcome],
        lost: list[tuple[QueueEntry, str]],
    ) -> None:
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
        worker = self.registry.add(identity, slots=slots, now=time.monotonic())
        worker.key = key
        worker.next_seq = header.get("seq", 1)
        for flight in previous:
            if reported.get(flight.entry.task_id) == flight.entry.attempt:
                self.registry.adopt(worker, flight)
            else:
                lost.append((flight.entry, "its worker restarted without it"))
        for task_id, attempt in reported.items():
            orphan = self._orphans.get(task_id)
            if orphan is not None and orphan.attempt == attempt:
                del self._orphans[task_id]
                deadline_at = time.monotonic() + orphan.deadline_s + self.settings.deadline_grace_s
                self.registry.adopt(worker, InFlight(orphan, worker.worker_id, deadline_at))
        # Held before a restart by this very worker, which no longer claims them: it
        # never got them, or they ended and were committed. Either way, not running.
        unclaimed = [t for t, w in self._orphan_holders.items()
                     if w == worker.worker_id and t in self._orphans]  # fmt: skip
        for task_id in unclaimed:
            lost.append((self._orphans.pop(task_id), "its worker registered without it"))
        if self.settings.mode == DispatchMode.PUSH:
            self.registry.grant(worker, slots)
        logger.info("worker %s joined with %d slots, running %d",
                    worker.worker_id, slots, len(worker.tasks))  # fmt: skip
        await self._reply(identity, wire.Command.WELCOME,
                          {"heartbeat_interval_s": self.settings.heartbeat_interval_s})  # fmt: skip

    async def _reply(
        self, identity: bytes, command: wire.Command, header: dict | None = None
    ) -> None:
        assert self._socket is not None
        try:
            await self._socket.send_multipart([identity, *wire.pack(command, header)])
        except zmq.ZMQError:
            pass  # the peer is gone; it will register again when it comes back

    async def _send_bundles(self, fetches: list[tuple[bytes, str]]) -> None:
        """Answer FETCHes off the serve loop: a bundle may be megabytes."""
        assert self._socket is not None
        for identity, digest in fetches:
            data = await self._retrying(lambda d=digest: self.store.get_bundle(d))  # type: ignore[misc]
            header = {"digest": digest, "found": data is not None}
            with contextlib.suppress(zmq.ZMQError):
                await self._socket.send_multipart(
                    [identity, *wire.pack(wire.Command.BUNDLE, header, data or b"")], copy=False
                )

    async def _write(self) -> None:
        while not self._stopping:
            await self._to_write.wait()
            if not self._stopping:  # at a stop, _shutdown flushes what is left
                await self._flush()

    async def _flush(self) -> None:
        self._to_write.clear()
        starts, ended, lost = self._starts, self._ended, self._lost
        self._starts, self._ended, self._lost = [], [], []
        # Every result handed over so far is in this batch or an earlier one: once it
        # commits, workers may forget them (the acknowledgement rides on heartbeats).
        # Only the workers that reported since the last flush: O(reporters), not O(workers).
        received = [(w, w.handed_seq) for w in self._unacked.values()
                    if self.registry.workers.get(w.identity) is w]  # fmt: skip
        self._unacked.clear()
        if starts:
            await self._retrying(lambda: self.store.mark_started(starts))
        await self._settle(ended, lost)
        for worker, seq in received:
            if seq > worker.acked_seq:
                worker.acked_seq = seq
                if worker.draining:  # it waits for this before leaving
                    await self._reply(worker.identity, wire.Command.HEARTBEAT, {"acked": seq})

    async def _settle(self, ended: list[Outcome], lost: list[tuple[QueueEntry, str]]) -> None:
        if ended:
            committed = await self._retrying(lambda: self.store.finish(ended))
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

    # -- housekeeping ---------------------------------------------------------------------

    async def _housekeep(self) -> None:
        # Liveness and deadlines are checked on a fine tick, so a dead worker is found
        # within ~0.1 s of its liveness timeout; heartbeats and the lease on their own.
        tick = min(0.1, self.settings.heartbeat_interval_s / 2)
        renew_every = min(self.settings.heartbeat_interval_s, self.settings.lease_ttl_s / 3)
        last_beat = 0.0
        while not self._stopping:
            await asyncio.sleep(tick)
            now = self.last_tick = time.monotonic()
            if now - last_beat >= renew_every:
                last_beat = now
                await self._renew_lease()
                for worker in list(self.registry.workers.values()):
                    await self._reply(
                        worker.identity, wire.Command.HEARTBEAT, {"acked": worker.acked_seq}
                    )
            lost: list[tuple[QueueEntry, str]] = []
            ended: list[Outcome] = []
            for worker in self.registry.silent_since(now - self.settings.liveness_timeout_s):
                logger.warning("worker %s silent for %.1f s: declared dead",
                               worker.worker_id, now - worker.last_seen)  # fmt: skip
                for flight in self.registry.remove(worker.identity):
                    lost.append((flight.entry, f"worker {worker.worker_id} stopped responding"))
            for worker, flight in self.registry.overdue(now):
                self.registry.release(worker, flight.entry.task_id)
                ended.append(outcomes.overdue(flight.entry))
            if self._orphans and now >= self._orphans_until:
                lost += [(e, "no worker reported it after a dispatcher restart")
                         for e in self._orphans.values()]  # fmt: skip
                self._orphans.clear()
                self._orphan_holders.clear()
            await self._settle(ended, lost)
            self._update_credit()

    async def _watch_lost_workers(self) -> None:
        """Reports from outside (the Kubernetes controller sees a pod die before the
        heartbeat timeout does): forget the worker and re-queue its attempts now."""
        while not self._stopping:
            try:
                report = await self.store.next_lost_worker(timeout_s=1.0)
            except StoreUnavailable as exc:
                logger.warning("cannot read lost-worker reports: %s", exc)
                await asyncio.sleep(1)
                continue
            if report is None:
                continue
            worker_id, reported_ms = report
            worker = self.registry.workers.get(worker_id.encode())
            if worker is None or reported_ms < worker.joined_at_ms:
                logger.info("ignored a loss report for %s (unknown, or joined since)", worker_id)
                continue
            logger.warning("worker %s reported lost: re-queuing its %d tasks",
                           worker_id, len(worker.tasks))  # fmt: skip
            lost = [(f.entry, f"worker {worker_id} was reported lost")
                    for f in self.registry.remove(worker.identity)]  # fmt: skip
            await self._settle([], lost)
            self._update_credit()

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
