"""The dispatcher <-> worker protocol over ZeroMQ (ROUTER on the dispatcher, DEALER
on workers). Every message is::

    [PROTOCOL, command (1 byte), header (msgpack map), *blobs]

Headers are small msgpack maps, never pickles; blobs are opaque bytes (the user's
function and arguments, or a result) that only a worker slot ever unpickles. The
ROUTER side sees the worker's identity frame in front of these.

Worker -> dispatcher
  HELLO      {worker_id, slots, running: [[task_id, attempt], ...]}  (re)register;
             `running` lists the attempts it still runs, so they are adopted
  READY      {credits}  pull mode: may receive this many more tasks
  RESULT     {task_id, attempt, outcome, error}  + [result]; frees one slot, which in
             pull mode is also one credit back
  HEARTBEAT  {}
  DRAIN      {}  stopping (SIGTERM): send no more work; results still come, then BYE
  BYE        {}  leaving on purpose; its running tasks are handed back
Dispatcher -> worker
  WELCOME    {heartbeat_interval_s}  reply to HELLO
  TASK       {task_id, attempt, function_id, deadline_s}  + [function, args]
  HEARTBEAT  {}
  RESET      {}  "I do not know you": the worker must send HELLO again

`outcome` is one of OUTCOMES: ok, error (the function raised), deadline (the slot
was killed at the deadline), lost (the slot process died).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import msgpack

from common.errors import ProtocolError

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


OUTCOMES = frozenset({"ok", "error", "deadline", "lost"})


@dataclass(frozen=True, slots=True)
class Message:
    command: Command
    header: dict[str, Any]
    blobs: list[bytes]


def pack(command: Command, header: dict[str, Any] | None = None, *blobs: bytes) -> list[bytes]:
    return [PROTOCOL, command.value, msgpack.packb(header or {}), *blobs]


def unpack(frames: list[bytes]) -> Message:
    """Parse frames (without a ROUTER identity); ProtocolError if anything is off."""
    if len(frames) < 3:
        raise ProtocolError(f"expected at least 3 frames, got {len(frames)}")
    if frames[0] != PROTOCOL:
        raise ProtocolError(f"unknown protocol {bytes(frames[0][:16])!r}")
    try:
        command = Command(bytes(frames[1]))
    except ValueError:
        raise ProtocolError(f"unknown command {bytes(frames[1][:8])!r}") from None
    try:
        header = msgpack.unpackb(frames[2])
    except Exception as exc:  # msgpack raises several unrelated types on junk
        raise ProtocolError(f"undecodable header: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not a map")
    return Message(command, header, [bytes(f) for f in frames[3:]])
