"""The dispatcher <-> worker protocol over ZeroMQ (ROUTER on the dispatcher, DEALER
on workers). Every message is::

    [PROTOCOL, command (1 byte), header (msgpack map), *blobs]

Headers are small msgpack maps, never pickles; blobs are opaque bytes (the user's
function and arguments, or a result) that only a worker slot ever unpickles. The
ROUTER side sees the worker's identity frame in front of these. `unpack` checks
every header field's type and range (`SCHEMAS`), so code past it never meets a
malformed value; unknown fields are ignored, for forward compatibility.

Worker -> dispatcher
  HELLO      {worker_id, slots, base_slots?, prefetch?, running: [[task_id, attempt], ...],
             queued?, seq, batches?}
             (re)register (`base_slots`: without spare slots, if it has some);
             `prefetch`: how many tasks it holds beyond its slots (see TASK);
             `running` lists the attempts it still runs or whose results are not yet
             acknowledged, so they are adopted, and `queued` those of them it holds
             prefetched and has not started; `seq` is the sequence number of its next
             RESULT (the first one it re-sends, if any); `batches`: it takes TASKs
             in a BATCH
  READY      {credits}  pull mode: may receive this many more tasks
  STARTED    {tasks: [[task_id, attempt], ...]}  prefetched attempts it has started
  RETURN     {tasks: [[task_id, attempt], ...]}  prefetched attempts it never started
             and gives back (it drains, or was asked to by RECALL): they go back to the
             queue, no attempt spent
  RESULT     {task_id, attempt, outcome, error, seq, started?}  + [result]; frees one
             slot, which in pull mode is also one credit back; `started` as in STARTED
             (the prefetched attempts started in the same loop turn, saving a message)
  HEARTBEAT  {}
  DRAIN      {}  stopping (SIGTERM): send no more work; results still come, then BYE
  FETCH      {digest}  send me the code bundle with this SHA-256
  CALL       {call_id, parent, attempt, function_id, task_ids, deadline_s?, max_attempts?,
             depends_on?, await?, again?} + [args per task]: the running attempt
             `parent` calls a function (nested calls), maybe with futures among the
             arguments (`depends_on`, its tenant's tasks: the calls wait for them);
             the ids are derived from the parent and the call's index in it, so a
             re-run finds its children instead of starting them twice. With `await`
             it also awaits them (as AWAIT would; CALLED comes only with an error);
             `again` marks one asked again after registering again: its tasks that
             already ended are answered at once
  AWAIT      {call_id, task_ids}  tell me when these tasks end (ENDED, once or more)
  INLINE     {call_id, parent, attempt, function_id}  may the running attempt `parent`
             run this function in its own slot (an inline call)? send its code
  SLOTS      {slots}  my slot count changed: a slot waiting on a nested call is lent out
             to a spare slot process, retired once it is idle again
  LOG        {task_id, attempt}  + [output]: what a running attempt printed (a chunk,
             at most MAX_LOG_CHUNK bytes), always before its RESULT
  BYE        {}  leaving on purpose; its running tasks are handed back
Dispatcher -> worker
  WELCOME    {heartbeat_interval_s, batches?}  reply to HELLO; `batches`: it takes
             RESULTs in a BATCH
  TASK       {task_id, attempt, function_id, deadline_s, tenant?, env?, futures?, depth?,
             prefetched?}  + [function, args, sources?, *results]; `prefetched`: sent
             while every slot of the worker was taken, so the task is still QUEUED in
             the store until the worker says STARTED; `depth` > 0: a nested call (a
             worker starts at most `base_slots` top-level tasks at once, so a spare
             slot always goes to a child); a slot that ran one tenant's code
             never runs another's; `env` is [requirements, bundle digests]: the
             environment the function runs in; `futures` lists the tasks whose results
             are among the arguments: then the sources frame is always there (maybe
             empty) and one result per future follows, in that order
  BUNDLE     {digest, found}  + [zip bytes]: reply to FETCH
  HEARTBEAT  {acked}  every RESULT up to sequence number `acked` is committed: the
             worker may forget it (until then it keeps it, to send again after a
             reconnect, so a result is never lost with a dispatcher); sent every
             heartbeat interval, and as soon as they commit after 1 MiB of results
  RESET      {}  "I do not know you": the worker must send HELLO again
  CALLED     {call_id, error?}  reply to CALL: the tasks are queued, or why not (to a
             CALL that awaits, only why not)
  ENDED      {call_id, tasks: [[task_id, status, error_kind, error], ...]} + [result per
             task]: awaited tasks that ended (or are unknown: status "")
  INLINE     {call_id, inline, why?, error?}  + [function, sources] if inline: reply
             to INLINE; not inline (and `why`) when the function needs another
             environment than the caller's, `error` when it may not be called at all
  RECALL     {tasks: [[task_id, attempt], ...]}  give these prefetched attempts back
             (RETURN) unless they started: another worker has a slot free for them
  CANCEL     {task_id, attempt}  the task was cancelled (or the attempt, claimed in a
             HELLO, is no longer held): drop it if it waits, kill its slot if it runs
             (RESULT outcome `cancelled`); ignored if it is not running
Both ways
  BATCH      {parts: [[command, header, blob count], ...]} + the parts' blobs in order:
             several TASKs, or several RESULTs, of one loop turn in one message, to a
             peer that said it takes them (`batches`): one send, and one wake-up of
             each side's I/O thread, instead of one per part. A part is checked as if
             it came alone.

`outcome` is one of OUTCOMES: ok, error (the function raised), dependency (the
function or its arguments need a module the worker cannot import), deadline (the
slot was killed at the deadline), too_large (the result exceeded the cap), lost
(the slot process died), cancelled (dropped or killed after a CANCEL).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import msgpack

from common.errors import ProtocolError
from common.models import MAX_DEPENDENCIES
from common.requirements import MAX_REQUIREMENT_CHARS, MAX_REQUIREMENTS

PROTOCOL = b"FAAS1"


class Command(bytes, Enum):
    HELLO = b"\x01"
    READY = b"\x02"
    TASK = b"\x03"
    RESULT = b"\x04"
    HEARTBEAT = b"\x05"
    BYE = b"\x06"
    WELCOME = b"\x07"
    RESET = b"\x08"
    DRAIN = b"\x09"
    FETCH = b"\x0a"
    BUNDLE = b"\x0b"
    CALL = b"\x0c"
    AWAIT = b"\x0d"
    SLOTS = b"\x0e"
    CALLED = b"\x0f"
    ENDED = b"\x10"
    CANCEL = b"\x11"
    LOG = b"\x12"
    INLINE = b"\x13"
    STARTED = b"\x14"
    RETURN = b"\x15"
    RECALL = b"\x16"
    BATCH = b"\x17"


_COMMANDS = {c.value: c for c in Command}  # Command(b) costs an Enum lookup per message

MAX_BUNDLES = 64
OUTCOMES = frozenset({"ok", "error", "dependency", "deadline", "too_large", "lost", "cancelled"})
MAX_SLOTS = 1024
MAX_SEQ = 2**63 - 1
MAX_CALL_TASKS = 10_000
MAX_BATCH_PARTS = 4 * MAX_SLOTS  # a turn's TASKs (at most credits: slots and prefetch)
BATCHED = frozenset({Command.TASK, Command.RESULT})  # what a BATCH may carry
_BATCHED_CODES = {c.value[0]: c for c in BATCHED}
MAX_LOG_CHUNK = 1024 * 1024
_MAX_ID = 200
_MAX_ERROR = 64 * 1024
_MAX_ATTEMPT = 1000

Check = Callable[[Any], bool]


def _text(limit: int) -> Check:
    return lambda v: isinstance(v, str) and len(v) <= limit


def _whole(low: int, high: int) -> Check:
    # bool is an int subclass; True is not a slot count
    return lambda v: type(v) is int and low <= v <= high


def _number(low: float, high: float) -> Check:
    def check(v: Any) -> bool:
        return type(v) in (int, float) and math.isfinite(v) and low <= v <= high

    return check


def _attempts(v: Any) -> bool:
    return (
        isinstance(v, list)
        and len(v) <= 100_000
        and all(
            isinstance(p, list)
            and len(p) == 2
            and _text(_MAX_ID)(p[0])
            and _whole(1, _MAX_ATTEMPT)(p[1])
            for p in v
        )
    )


_ID = _text(_MAX_ID)
_SEQ = _whole(0, MAX_SEQ)
_DIGEST = _text(64)


def _env(v: Any) -> bool:
    return (
        isinstance(v, list)
        and len(v) == 2
        and isinstance(v[0], list)
        and len(v[0]) <= MAX_REQUIREMENTS
        and all(_text(MAX_REQUIREMENT_CHARS)(r) for r in v[0])
        and isinstance(v[1], list)
        and len(v[1]) <= MAX_BUNDLES
        and all(_DIGEST(d) for d in v[1])
    )


def _flag(v: Any) -> bool:
    return isinstance(v, bool)


def _ids(v: Any) -> bool:
    return isinstance(v, list) and 1 <= len(v) <= MAX_CALL_TASKS and all(_ID(i) for i in v)


def _futures(v: Any) -> bool:
    return isinstance(v, list) and 1 <= len(v) <= MAX_DEPENDENCIES and all(_ID(i) for i in v)


def _ended(v: Any) -> bool:
    return (
        isinstance(v, list)
        and len(v) <= MAX_CALL_TASKS
        and all(
            isinstance(t, list)
            and len(t) == 4
            and _ID(t[0])
            and _text(16)(t[1])
            and _text(32)(t[2])
            and _text(_MAX_ERROR)(t[3])
            for t in v
        )
    )


def _batch_parts(v: Any) -> bool:
    return (
        isinstance(v, list)
        and 1 <= len(v) <= MAX_BATCH_PARTS
        and all(
            isinstance(p, list)
            and len(p) == 3
            and type(p[0]) is int
            and p[0] in _BATCHED_CODES
            and isinstance(p[1], dict)
            and _whole(0, 3 + MAX_DEPENDENCIES)(p[2])
            for p in v
        )
    )


# Per command: required fields, optional fields, and how many blobs (min, max).
SCHEMAS: dict[Command, tuple[dict[str, Check], dict[str, Check], tuple[int, int]]] = {
    Command.HELLO: (
        {"worker_id": _ID, "slots": _whole(1, MAX_SLOTS)},
        {
            "running": _attempts,
            "queued": _attempts,
            "seq": _SEQ,
            "base_slots": _whole(1, MAX_SLOTS),
            "prefetch": _whole(0, MAX_SLOTS),
            "batches": _flag,
        },
        (0, 0),
    ),
    Command.READY: ({"credits": _whole(0, 2 * MAX_SLOTS)}, {}, (0, 0)),
    Command.STARTED: ({"tasks": _attempts}, {}, (0, 0)),
    Command.RETURN: ({"tasks": _attempts}, {}, (0, 0)),
    Command.RECALL: ({"tasks": _attempts}, {}, (0, 0)),
    Command.RESULT: (
        {
            "task_id": _ID,
            "attempt": _whole(1, _MAX_ATTEMPT),
            "outcome": lambda v: v in OUTCOMES,
            "seq": _SEQ,
        },
        {"error": _text(_MAX_ERROR), "started": _attempts},
        (0, 1),
    ),
    Command.HEARTBEAT: ({}, {"acked": _SEQ}, (0, 0)),
    Command.DRAIN: ({}, {}, (0, 0)),
    Command.BYE: ({}, {}, (0, 0)),
    Command.WELCOME: (
        {"heartbeat_interval_s": _number(0.001, 3600)},
        {"batches": _flag},
        (0, 0),
    ),
    Command.TASK: (
        {
            "task_id": _ID,
            "attempt": _whole(1, _MAX_ATTEMPT),
            "function_id": _ID,
            "deadline_s": _number(0.001, 10**7),
        },
        {
            "tenant": _text(_MAX_ID),
            "env": _env,
            "futures": _futures,
            "depth": _whole(0, 1000),
            "prefetched": _flag,
        },
        # function, args, the function's sources if it has any (always, with futures),
        # and the futures' results
        (2, 3 + MAX_DEPENDENCIES),
    ),
    Command.RESET: ({}, {}, (0, 0)),
    Command.CANCEL: ({"task_id": _ID, "attempt": _whole(1, _MAX_ATTEMPT)}, {}, (0, 0)),
    Command.FETCH: ({"digest": _DIGEST}, {}, (0, 0)),
    Command.BUNDLE: ({"digest": _DIGEST, "found": _flag}, {}, (1, 1)),
    Command.CALL: (
        {
            "call_id": _SEQ,
            "parent": _ID,
            "attempt": _whole(1, _MAX_ATTEMPT),
            "function_id": _ID,
            "task_ids": _ids,
        },
        {
            "deadline_s": _number(0.001, 10**7),
            "max_attempts": _whole(1, 100),
            "depends_on": _futures,
            "await": _flag,
            "again": _flag,
        },
        (1, MAX_CALL_TASKS),
    ),
    Command.AWAIT: ({"call_id": _SEQ, "task_ids": _ids}, {}, (0, 0)),
    Command.SLOTS: ({"slots": _whole(1, MAX_SLOTS)}, {}, (0, 0)),
    Command.CALLED: ({"call_id": _SEQ}, {"error": _text(_MAX_ERROR)}, (0, 0)),
    Command.ENDED: ({"call_id": _SEQ, "tasks": _ended}, {}, (0, MAX_CALL_TASKS)),
    Command.LOG: ({"task_id": _ID, "attempt": _whole(1, _MAX_ATTEMPT)}, {}, (1, 1)),
    # `unpack` checks each of its parts against the part's own schema.
    Command.BATCH: ({"parts": _batch_parts}, {}, (0, MAX_BATCH_PARTS * (3 + MAX_DEPENDENCIES))),
    # Both ways: a question (parent...) to the dispatcher, its answer (inline...) back.
    Command.INLINE: (
        {"call_id": _SEQ},
        {
            "parent": _ID,
            "attempt": _whole(1, _MAX_ATTEMPT),
            "function_id": _ID,
            "inline": _flag,
            "why": _text(_MAX_ERROR),
            "error": _text(_MAX_ERROR),
        },
        (0, 2),
    ),
}


@dataclass(frozen=True, slots=True)
class Message:
    command: Command
    header: dict[str, Any]
    blobs: list[bytes]
    parts: tuple[Message, ...] = ()  # a BATCH's messages, each checked

    def messages(self) -> tuple[Message, ...]:
        """What to handle: a BATCH's parts, or this message alone."""
        return self.parts if self.command == Command.BATCH else (self,)


def pack(command: Command, header: dict[str, Any] | None = None, *blobs: bytes) -> list[bytes]:
    return [PROTOCOL, command.value, msgpack.packb(header or {}), *blobs]


def pack_batch(command: Command, parts: list[tuple[dict[str, Any], list[bytes]]]) -> list[bytes]:
    """Several messages of one command as one BATCH (a single one goes alone)."""
    if len(parts) == 1:
        header, blobs = parts[0]
        return pack(command, header, *blobs)
    code = command.value[0]
    header = {"parts": [[code, h, len(blobs)] for h, blobs in parts]}
    return pack(Command.BATCH, header, *(b for _, blobs in parts for b in blobs))


def unpack(frames: list[bytes]) -> Message:
    """Parse and check frames (without a ROUTER identity); ProtocolError if anything
    is off, so a bad peer costs one dropped message and never a crash."""
    if len(frames) < 3:
        raise ProtocolError(f"expected at least 3 frames, got {len(frames)}")
    if frames[0] != PROTOCOL:
        raise ProtocolError(f"unknown protocol {bytes(frames[0][:16])!r}")
    command = _COMMANDS.get(bytes(frames[1]))
    if command is None:
        raise ProtocolError(f"unknown command {bytes(frames[1][:8])!r}")
    try:
        header = msgpack.unpackb(frames[2])
    except Exception as exc:  # msgpack raises several unrelated types on junk
        raise ProtocolError(f"undecodable header: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not a map")
    blobs = [bytes(f) for f in frames[3:]]
    _check(command, header, blobs)
    if command != Command.BATCH:
        return Message(command, header, blobs)
    parts, first = [], 0
    for code, part_header, count in header["parts"]:
        part = Message(_BATCHED_CODES[code], part_header, blobs[first : first + count])
        _check(part.command, part.header, part.blobs)
        parts.append(part)
        first += count
    if first != len(blobs):
        raise ProtocolError(f"BATCH with {len(blobs)} blobs for parts of {first}")
    return Message(command, header, blobs, tuple(parts))


def _check(command: Command, header: dict[str, Any], blobs: list[bytes]) -> None:
    required, optional, (fewest, most) = SCHEMAS[command]
    for name, check in required.items():
        if name not in header:
            raise ProtocolError(f"{command.name} without {name!r}")
        if not check(header[name]):
            raise ProtocolError(f"{command.name} with a bad {name!r}: {header[name]!r:.80}")
    for name, check in optional.items():
        if name in header and not check(header[name]):
            raise ProtocolError(f"{command.name} with a bad {name!r}: {header[name]!r:.80}")
    if not fewest <= len(blobs) <= most:
        raise ProtocolError(f"{command.name} with {len(blobs)} blobs")
    if command == Command.LOG and len(blobs[0]) > MAX_LOG_CHUNK:
        raise ProtocolError(f"LOG chunk of {len(blobs[0])} bytes")
    if command == Command.TASK and len(blobs) != (
        3 + len(header["futures"]) if "futures" in header else min(len(blobs), 3)
    ):
        raise ProtocolError(f"TASK with {len(blobs)} blobs for its futures")
