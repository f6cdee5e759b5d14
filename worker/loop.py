"""The worker's event loop: one DEALER socket to the dispatcher and the pipes of
its slot processes, multiplexed by one zmq.Poller in one thread.

It registers (HELLO, listing any attempts it still runs so the dispatcher adopts
them), announces credits in pull mode, runs TASKs in free slots, reports RESULTs,
enforces deadlines through the pool, and heartbeats. Every RESULT is numbered and
kept until the dispatcher acknowledges its commit, and re-sent after each HELLO:
a dispatcher that dies between receiving a result and committing it costs no
re-run. When the dispatcher has been silent for `liveness_timeout_s` the worker
registers again on a fresh socket, at once (ZeroMQ keeps retrying the TCP
connection every 0.1 s, so the HELLO lands as soon as a dispatcher listens).
Local mode runs this same loop on the dispatcher's event loop (dispatcher.local),
with an in-memory link (common.local_link) instead of a DEALER socket.

Prefetch: the worker takes up to `prefetch` tasks beyond its free slots, so a slot
that frees starts the next task at once instead of idling for the round trip of a
credit (7-10 ms under load). The dispatcher marks such a TASK `prefetched` and
leaves it QUEUED in the store; the turn's last RESULT (or a STARTED of its own) tells
it when a slot takes one. A draining worker gives back those it has not started (RETURN), as
does one the dispatcher asks (RECALL: another worker has a slot free for them), and
a dead one's go back unstarted: either way no attempt is spent.
"""

from __future__ import annotations

import logging
import math
import os
import sysconfig
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path

import zmq

from common import curve, local_link, wire
from common.errors import ProtocolError
from common.hardening import unreadable_by
from common.models import DispatchMode, FunctionEnv
from worker import metrics
from worker.calls import NestedCalls
from worker.environments import Environments, Failed
from worker.output import OutputBuffers
from worker.pool import Job, JobResult, SlotPool, SlotRequest
from worker.prepare import Prepared, Preparer
from worker.settings import WorkerSettings
from worker.slot import Limits, dump_exception

logger = logging.getLogger(__name__)

_MAX_POLL_MS = 100
_RECONNECT_IVL_MS = 100
_BYE_LINGER_MS = 1000


class WorkerLoop:
    def __init__(
        self,
        settings: WorkerSettings,
        *,
        context: zmq.Context | None = None,
        pool: SlotPool | None = None,
        link: local_link.WorkerEnd | None = None,
    ) -> None:
        self.settings = settings
        self._context = context or zmq.Context.instance()
        self._output = OutputBuffers(self._send_output, max_bytes=settings.task_log_max_bytes)
        slot_uid = _slot_uid(settings)
        self._pool = pool or SlotPool(
            settings.slots,
            max_result_bytes=settings.max_result_bytes,
            max_tasks_per_slot=settings.max_tasks_per_slot,
            limits=Limits(
                memory_bytes=settings.slot_max_memory_bytes,
                open_files=settings.slot_max_open_files,
                processes=settings.slot_max_processes,
                uid=slot_uid,
                gid=settings.slot_gid,
            ),
            max_spare_slots=settings.max_spare_slots,
            on_output=self._task_output,
            capture_output=settings.capture_output,
        )
        # Assigned but not started: waiting for a free slot, a bundle or an environment.
        self._waiting: deque[Job] = deque()
        self._cancels: list[tuple[str, int]] = []  # (task_id, attempt) to drop or kill
        self._started: list[list[str | int]] = []  # prefetched jobs started this turn
        self._results_out: list[tuple[dict, bytes]] = []  # RESULTs of this turn, unsent
        self._batches = False  # the dispatcher takes RESULTs in a BATCH
        environments = Environments(
            settings.env_dir,
            index_url=settings.pip_index_url or None,
            find_links=[x for x in settings.pip_find_links.split(",") if x],
            no_index=settings.pip_no_index,
            trusted_hosts=[x for x in settings.pip_trusted_hosts.split(",") if x],
            max_bytes=settings.env_cache_max_bytes,
        )
        self._preparer = Preparer(environments, fetch=self._fetch_bundle)
        self._socket: zmq.Socket | local_link.WorkerEnd | None = None
        self._polled_as: zmq.Socket | None = None  # what poll() reports for the link
        self._local_end = link  # local mode's, kept across HELLOs
        self._poller = zmq.Poller()
        self._polled_fds: set[int] = set()
        self._last_heard = 0.0
        self._last_sent = 0.0
        # RESULTs by sequence number, until the dispatcher says they are committed.
        self._next_seq = 1
        self._unacked: OrderedDict[int, tuple[dict, bytes]] = OrderedDict()
        self._unacked_bytes = 0
        self._calls = NestedCalls()
        self._announced_slots = self._pool.size
        self.draining = False
        self._drain_until = math.inf  # set by begin_drain
        self._acks_until: float | None = None  # when drained() stops waiting for acks
        self.last_tick = time.monotonic()  # the loop's heartbeat, for /healthz

    # -- connection ------------------------------------------------------------------

    def _open(self) -> zmq.Socket | local_link.WorkerEnd:
        if self._local_end is not None:
            return self._local_end
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, _RECONNECT_IVL_MS)
        sock.setsockopt(zmq.IDENTITY, self.settings.worker_id.encode())
        if self.settings.worker_secret_key:
            curve.connect_securely(
                sock, self.settings.worker_secret_key, self.settings.dispatcher_public_key
            )
        sock.connect(self.settings.dispatcher_url)
        return sock

    def connect(self) -> None:
        """Open the link (unless local mode's, which stays) and register: HELLO."""
        sock = self._socket = self._open()
        if isinstance(sock, zmq.Socket):  # local mode's is read on every turn
            self._poller.register(sock, zmq.POLLIN)
            self._polled_as = sock
        self._last_heard = time.monotonic()
        # Attempts whose results await acknowledgement count as running: the
        # dispatcher keeps holding them, and the re-sent RESULTs below commit them.
        held = [[job.task_id, job.attempt] for job in [*self._pool.jobs(), *self._waiting]]
        held += [[h["task_id"], h["attempt"]] for h, _ in self._unacked.values()]
        queued = [[job.task_id, job.attempt] for job in self._waiting if job.prefetched]
        first_seq = next(iter(self._unacked), self._next_seq)
        hello = {
            "worker_id": self.settings.worker_id,
            "slots": self._pool.size,
            "base_slots": self._pool.base,
            "prefetch": self.settings.prefetch_count,
            "running": held,
            "queued": queued,
            "seq": first_seq,
            "batches": True,
        }
        self._batches = False  # until this dispatcher's WELCOME says it takes them
        self._announced_slots = self._pool.size
        self._started.clear()  # a STARTED lost with the old socket: `queued` says it now
        self._results_out.clear()  # unacknowledged: re-sent below
        self._send(wire.Command.HELLO, hello)
        for header, blob in self._unacked.values():
            self._send(wire.Command.RESULT, header, blob)
        for command, header, blobs in self._calls.outstanding():
            self._send(command, header, *blobs)
        self._announce_credits()
        if self.draining:
            self._send(wire.Command.DRAIN)
        logger.info(
            "worker %s connected to %s", self.settings.worker_id,
            "its dispatcher, in process" if self._local_end else self.settings.dispatcher_url,
        )  # fmt: skip

    def _disconnect(self, linger_ms: int = 0) -> None:
        if self._socket is not None:
            if self._polled_as is not None:
                self._poller.unregister(self._polled_as)
                self._polled_as = None
            self._socket.close(linger=linger_ms)
            self._socket = None

    def _announce_credits(self) -> None:
        free = self._pool.idle() + self.settings.prefetch_count - len(self._waiting)
        if self.settings.mode == DispatchMode.PULL and free > 0 and not self.draining:
            self._send(wire.Command.READY, {"credits": free})

    def _send(self, command: wire.Command, header: dict | None = None, *blobs: bytes) -> None:
        self._send_frames(wire.pack(command, header, *blobs))

    def _send_frames(self, frames: list[bytes]) -> None:
        assert self._socket is not None
        self._socket.send_multipart(frames, copy=False)
        self._last_sent = time.monotonic()

    # -- main loop ---------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set; then hand back what still runs and close."""
        self.connect()
        try:
            while not stop.is_set():
                self.step()
            self.begin_drain()
            while not self.drained():
                self.step()
        finally:
            self.finish()

    def begin_drain(self) -> None:
        """Take no new work; running tasks may finish for up to drain_timeout_s (see
        `drained`). Whatever still runs after that is handed back by BYE."""
        self.draining = True
        if self._socket is not None:
            self._send(wire.Command.DRAIN)  # else each result would earn new work
            self._give_back_prefetched()
        self._drain_until = time.monotonic() + self.settings.drain_timeout_s
        self._acks_until = None
        if self._pool.jobs():
            logger.info("draining %d running tasks", len(self._pool.jobs()))

    def drained(self) -> bool:
        """After `begin_drain`: nothing runs (or the drain timed out), and every result
        was acknowledged (or the dispatcher stays silent): a result the dispatcher never
        committed would run again, so the acknowledgement, which a draining worker gets
        right after a commit, is worth a short wait."""
        now = time.monotonic()
        if self._pool.jobs() and now < self._drain_until:
            return False
        if self._acks_until is None:
            self._acks_until = now + self.settings.liveness_timeout_s
        return not (self._unacked and self.connected and now < self._acks_until)

    @property
    def connected(self) -> bool:
        """Heard from the dispatcher within the liveness timeout (for /readyz)."""
        return time.monotonic() - self._last_heard < self.settings.liveness_timeout_s

    def step(self, timeout_ms: int | None = None) -> None:
        """One turn: wait for the link or a slot (up to `timeout_ms`; by default until
        the next deadline or heartbeat), then do what is due."""
        self.last_tick = time.monotonic()
        self._sync_polled_fds()
        wait_ms = self.poll_timeout_ms() if timeout_ms is None else timeout_ms
        events = dict(self._poller.poll(wait_ms))
        now = time.monotonic()
        if self._socket is not None and (self._polled_as is None or self._polled_as in events):
            self._receive_all()
        for fd in self._pool.output_fds():
            if fd in events:
                self._pool.read_output(fd)
        for fd in self._pool.fds():
            if fd in events:
                result = self._pool.collect(fd)
                if isinstance(result, SlotRequest):
                    self._nested(result)
                elif result is not None:
                    self._report(result)
        for result in self._pool.expire(now):
            self._report(result)
        # After the slots' pipes are read: a killed slot's replacement may reuse its fd.
        cancels, self._cancels = self._cancels, []
        for task_id, attempt in cancels:
            self._cancel(task_id, attempt)
        if self._pool.trim(now):
            self._slots_changed()
        if self.draining:  # tasks sent before the dispatcher heard DRAIN
            self._give_back_prefetched()
        self._start_waiting()
        self._send_results()
        metrics.SLOTS_BUSY.set(self._pool.size - self._pool.idle())
        self._output.flush_due(now)
        self._keep_alive(now)

    def _sync_polled_fds(self) -> None:
        """Slots are replaced when they die, so the set of pipes to poll changes."""
        current = {*self._pool.fds(), *self._pool.output_fds()}
        for fd in self._polled_fds - current:
            self._poller.unregister(fd)
        for fd in current - self._polled_fds:
            self._poller.register(fd, zmq.POLLIN)
        self._polled_fds = current

    def slot_fds(self) -> tuple[int, set[int]]:
        """The slots' pipes and outputs, which a turn reads when readable, and the
        pool's generation (it changes whenever they do, even to the same numbers)."""
        return self._pool.generation, {*self._pool.fds(), *self._pool.output_fds()}

    def poll_timeout_ms(self) -> int:
        """Until the next deadline or heartbeat is due (at most 0.1 s)."""
        timeout = _MAX_POLL_MS / 1000
        deadline = self._pool.next_deadline()
        if deadline is not None:
            timeout = min(timeout, max(deadline - time.monotonic(), 0))
        return int(timeout * 1000) + 1

    def _receive_all(self) -> None:
        assert self._socket is not None
        while True:
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._last_heard = time.monotonic()
            try:
                for msg in wire.unpack(frames).messages():
                    self._handle(msg)
            except ProtocolError as exc:
                logger.warning("dropped a message from the dispatcher: %s", exc)

    def _handle(self, msg: wire.Message) -> None:
        if msg.command == wire.Command.TASK:
            h = msg.header
            if len(msg.blobs) < 2:
                raise ProtocolError("TASK needs a function and an args frame")
            futures = h.get("futures", [])  # wire.unpack checked one result frame each
            job = Job(
                task_id=str(h["task_id"]),
                attempt=int(h["attempt"]),
                function_id=str(h["function_id"]),
                function=msg.blobs[0],
                args=msg.blobs[1],
                deadline_s=float(h["deadline_s"]),
                tenant=h.get("tenant", ""),
                env=FunctionEnv(tuple(h["env"][0]), tuple(h["env"][1])) if "env" in h else None,
                sources=msg.blobs[2] if len(msg.blobs) >= 3 else b"",
                futures=dict(zip(futures, msg.blobs[3:], strict=True)),
                depth=int(h.get("depth", 0)),
                prefetched=bool(h.get("prefetched", False)),
            )
            self._waiting.append(job)
            self._start_waiting()
        elif msg.command == wire.Command.RECALL:
            self._give_back_prefetched({(t, a) for t, a in msg.header["tasks"]})
        elif msg.command == wire.Command.CANCEL:
            self._cancels.append((msg.header["task_id"], msg.header["attempt"]))
        elif msg.command == wire.Command.RESET:
            logger.info("dispatcher does not know this worker: registering again")
            self._disconnect()
            self.connect()
        elif msg.command == wire.Command.HEARTBEAT:
            self._forget_acked(msg.header.get("acked", 0))
        elif msg.command == wire.Command.BUNDLE:
            h = msg.header
            self._preparer.bundle_arrived(h["digest"], h["found"], msg.blobs[0])
            self._start_waiting()
        elif msg.command == wire.Command.CALLED:
            error = msg.header.get("error")
            called = self._calls.called(msg.header["call_id"], error)
            if called is not None and called.waiting:  # a call that awaits, refused
                self._pool.unblock(called.fd)
                self._pool.reply(called.fd, called.task_id, ("ended", None, error))
        elif msg.command == wire.Command.INLINE:
            answered = self._calls.answered(msg.header["call_id"])
            if answered is not None:
                code = msg.blobs if len(msg.blobs) == 2 else [b"", b""]
                h = msg.header
                answer = ("inline", h.get("inline", False), h.get("error"), *code)
                self._pool.reply(answered.fd, answered.task_id, answer)
        elif msg.command == wire.Command.ENDED:
            done = self._calls.ended(msg.header["call_id"], msg.header["tasks"], msg.blobs)
            if done is not None:
                self._pool.unblock(done.fd)
                self._pool.reply(done.fd, done.task_id, ("ended", done.ended, ""))
        elif msg.command == wire.Command.WELCOME:
            self._batches = msg.header.get("batches", False)
        else:
            raise ProtocolError(f"unexpected {msg.command.name} from the dispatcher")

    def _nested(self, request: SlotRequest) -> None:
        """A function calls other functions (see `faas.nested`): ask the dispatcher.
        While it waits, its slot is lent out to other work."""
        if request.kind == "call":
            pending = self._calls.call(request)
        elif request.kind == "inline":
            pending = self._calls.inline(request)
        elif request.kind in ("run", "await"):  # the slot waits: lend it out
            if not self._pool.block(request.fd):
                error = (f"all {self._pool.size} slots of this worker would wait on nested "
                         f"calls (FAAS_MAX_SPARE_SLOTS reached): refusing to wait")  # fmt: skip
                self._pool.reply(request.fd, request.job.task_id, ("ended", None, error))
                return
            if request.kind == "run":
                pending = self._calls.call(request, wait=True)
            else:
                pending = self._calls.wait(request)
            self._slots_changed()
        else:
            logger.warning("task %s: unknown nested request %r", request.job.task_id,
                           request.kind)  # fmt: skip
            return
        self._send(pending.command, pending.header, *pending.blobs)

    def _slots_changed(self) -> None:
        """Spare slots came or went: the dispatcher sizes its credits by our slots."""
        if self._pool.size != self._announced_slots and self._socket is not None:
            self._announced_slots = self._pool.size
            self._send(wire.Command.SLOTS, {"slots": self._pool.size})
        self._announce_credits()

    def _cancel(self, task_id: str, attempt: int) -> None:
        """Drop the attempt if it waits, kill its slot if it runs; either way report
        it, which frees its place at the dispatcher. Nothing if it already ended."""
        error = f"cancelled: task {task_id} attempt {attempt} was cancelled by request"
        waiting = [j for j in self._waiting if (j.task_id, j.attempt) == (task_id, attempt)]
        for job in waiting:
            logger.info("task %s: %s before it started", task_id, error)
            self._waiting.remove(job)
            self._report(JobResult(job, "cancelled", b"", error))
        result = self._pool.cancel(task_id, attempt, error)
        if result is not None:
            self._report(result)

    def _forget_acked(self, acked: int) -> None:
        while self._unacked and next(iter(self._unacked)) <= acked:
            _, (_, blob) = self._unacked.popitem(last=False)
            self._unacked_bytes -= len(blob)

    def _fetch_bundle(self, digest: str) -> None:
        self._send(wire.Command.FETCH, {"digest": digest})

    def _give_back_prefetched(self, only: set[tuple[str, int]] | None = None) -> None:
        """Prefetched jobs not started go back to the queue: all of them when
        draining (rather than wait for a slot, maybe past the drain timeout), or
        those `only` the dispatcher recalls for another worker's free slot."""
        back = [job for job in self._waiting if job.prefetched
                and (only is None or (job.task_id, job.attempt) in only)]  # fmt: skip
        if not back or self._socket is None:
            return
        for job in back:
            self._waiting.remove(job)
            self._preparer.finished(job)
        logger.info("gave back %d prefetched tasks", len(back))
        self._send(wire.Command.RETURN, {"tasks": [[j.task_id, j.attempt] for j in back]})

    def _start_waiting(self) -> None:
        """Start what can start, in order; a job whose environment is still being
        prepared does not hold up the ones behind it, nor does a top-level job while
        `base` top-level jobs run (spare slots are for the children parents wait on)."""
        if not self._waiting:
            return
        still: deque[Job] = deque()
        top_level = sum(1 for job in self._pool.jobs() if job.depth == 0)
        while self._waiting:
            job = self._waiting.popleft()
            room = self._pool.idle() and (job.depth > 0 or top_level < self._pool.base)
            state = self._preparer.prepare(job) if room else None
            if isinstance(state, Prepared):
                self._pool.run(job, state.env_path, state.env_key)
                top_level += job.depth == 0
                if job.prefetched:
                    self._started.append([job.task_id, job.attempt])
            elif isinstance(state, Failed):
                failure = ModuleNotFoundError(f"the function's environment: {state.message}")
                self._report(JobResult(job, "dependency", dump_exception(failure), str(failure)))
            else:
                still.append(job)
        self._waiting = still

    def _task_output(self, job: Job, data: bytes) -> None:
        metrics.OUTPUT_BYTES.inc(len(data))
        self._output.add(job.task_id, job.attempt, data)

    def _send_output(self, task_id: str, attempt: int, data: bytes) -> None:
        # Best effort: output sent while the dispatcher is unreachable is lost (results
        # are kept and re-sent; output is not).
        if self._socket is not None:
            self._send(wire.Command.LOG, {"task_id": task_id, "attempt": attempt}, data)

    def _report(self, result: JobResult) -> None:
        job = result.job
        self._preparer.finished(job)  # its environment is no longer in use
        self._calls.forget(job.task_id)
        self._output.finish(job.task_id, job.attempt)  # its output is stored before its end
        metrics.TASKS.labels(result.outcome).inc()
        header = {
            "task_id": job.task_id,
            "attempt": job.attempt,
            "outcome": result.outcome,
            "error": result.error,
            "seq": self._next_seq,
        }
        self._unacked[self._next_seq] = (header, result.result)
        self._unacked_bytes += len(result.result)
        self._next_seq += 1
        while self._unacked_bytes > self.settings.unacked_results_max_bytes:
            _, (old, blob) = self._unacked.popitem(last=False)
            self._unacked_bytes -= len(blob)
            logger.warning("task %s: forgot an unacknowledged result (over %d bytes kept); "
                           "it runs again if the dispatcher lost it",
                           old["task_id"], self.settings.unacked_results_max_bytes)  # fmt: skip
        self._results_out.append((header, result.result))  # sent at the end of this turn

    def _send_results(self) -> None:
        """This turn's RESULTs, in one BATCH if the dispatcher takes them, the last one
        carrying the prefetched attempts started in the turn (a slot that freed usually
        took the next one at once): one message per turn instead of two per task.
        STARTED goes alone when no result does."""
        results, self._results_out = self._results_out, []
        started, self._started = self._started, []
        if self._socket is None:
            return  # connect re-sends every unacknowledged result, and `queued` says the rest
        if results and started:
            header, blob = results[-1]
            results[-1] = ({**header, "started": started}, blob)
        elif started:
            self._send(wire.Command.STARTED, {"tasks": started})
        if self._batches and len(results) > 1:
            frames = wire.pack_batch(wire.Command.RESULT, [(h, [b]) for h, b in results])
            self._send_frames(frames)
        else:
            for header, blob in results:
                self._send(wire.Command.RESULT, header, blob)

    def _keep_alive(self, now: float) -> None:
        if now - self._last_heard > self.settings.liveness_timeout_s:
            logger.warning("no word from the dispatcher for %.1f s: registering again",
                           now - self._last_heard)  # fmt: skip
            self._disconnect()
            self.connect()
        elif now - self._last_sent >= self.settings.heartbeat_interval_s:
            self._send(wire.Command.HEARTBEAT)

    def finish(self) -> None:
        """BYE (what still runs goes back at once), then close the link and the slots."""
        try:
            if self._socket is not None:
                self._send(wire.Command.BYE)
        finally:
            self._disconnect(linger_ms=_BYE_LINGER_MS)
            self._pool.close()


def _slot_uid(settings: WorkerSettings) -> int:
    """The uid slots of a root worker run as: slot_uid, unless it cannot read Python,
    the platform or the environments (e.g. a Python installed under /root), where every
    import not preloaded would fail in user code. Then slots stay root, and the log
    says so loudly: a platform that runs is better than one that cannot import, and
    the separation is one `chmod` or a system Python away."""
    if os.geteuid() != 0 or not settings.slot_uid or settings.slot_uid_always:
        return settings.slot_uid
    paths = sysconfig.get_paths()
    needed = [paths["stdlib"], paths["purelib"], paths["platlib"],
              str(Path(__file__).resolve().parents[1]), str(settings.env_dir)]  # fmt: skip
    refused = unreadable_by(settings.slot_uid, settings.slot_gid, needed)
    if not refused:
        return settings.slot_uid
    logger.warning(
        "slots would run as uid %d, which cannot read %s: imports there would fail in "
        "user code, so slots run as root instead and can read every process's secrets. "
        "Install Python and the platform where other users can read them to separate "
        "slots from the worker (FAAS_SLOT_UID=0 silences this; FAAS_SLOT_UID_ALWAYS=true "
        "drops anyway).",
        settings.slot_uid,
        ", ".join(refused),
    )
    return 0
