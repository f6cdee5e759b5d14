"""What tasks print, on its way from a slot's pipe to the dispatcher.

The worker reads each slot's stdout/stderr pipe as output arrives and files it
under the attempt the slot runs. An attempt's output is sent in chunks: at most
every `flush_interval_s` (not per print), sooner when `chunk_bytes` accumulate,
and always before its RESULT, so a task's logs are stored before it ends. Each
attempt's output starts with an `--- attempt N ---` line and keeps at most
`max_bytes`; past that it is dropped, and one line says so (`common.output`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from common.output import attempt_header, truncated_line


@dataclass(slots=True)
class _Attempt:
    task_id: str
    attempt: int
    pending: bytearray = field(default_factory=bytearray)
    kept: int = 0  # bytes of output accepted so far (the cap counts these)
    truncated: bool = False
    labelled: bool = False  # its header line went out with its first chunk
    since: float = 0.0  # when `pending` got its first byte


Send = Callable[[str, int, bytes], None]


class OutputBuffers:
    def __init__(
        self,
        send: Send,
        *,
        max_bytes: int = 64 * 1024,
        flush_interval_s: float = 0.15,
        chunk_bytes: int = 16 * 1024,
    ) -> None:
        self._send = send
        self._max = max_bytes
        self._interval = flush_interval_s
        self._chunk = chunk_bytes
        self._attempts: dict[tuple[str, int], _Attempt] = {}

    def add(self, task_id: str, attempt: int, data: bytes) -> None:
        """Output of a running attempt; what passes the cap is dropped and marked."""
        a = self._attempts.get((task_id, attempt))
        if a is None:
            a = self._attempts[(task_id, attempt)] = _Attempt(task_id, attempt)
        if a.truncated or not data:
            return
        if not a.pending:
            a.since = time.monotonic()
        room = self._max - a.kept
        if len(data) > room:
            a.pending += data[:room]
            a.kept = self._max
            a.truncated = True
            newline = b"" if a.pending.endswith(b"\n") else b"\n"
            a.pending += newline + truncated_line(self._max)
        else:
            a.pending += data
            a.kept += len(data)
        if len(a.pending) >= self._chunk:
            self._flush(a)

    def flush_due(self, now: float) -> None:
        for a in self._attempts.values():
            if a.pending and now - a.since >= self._interval:
                self._flush(a)

    def finish(self, task_id: str, attempt: int) -> None:
        """The attempt ended: send what is left and forget it."""
        a = self._attempts.pop((task_id, attempt), None)
        if a is not None:
            self._flush(a)

    def _flush(self, a: _Attempt) -> None:
        if not a.pending:  # an attempt that printed nothing sends nothing
            return
        header = b"" if a.labelled else attempt_header(a.attempt)
        a.labelled = True
        self._send(a.task_id, a.attempt, header + bytes(a.pending))
        a.pending.clear()
