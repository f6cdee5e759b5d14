"""The dispatcher's view for the status API: its workers and how many tasks ended
per minute. It is written to the store every heartbeat interval (see
`Store.put_status`) and read by the gateway for `/v1/workers` and `/v1/stats`."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import msgpack

from dispatcher.registry import Registry

MINUTES = 60
"""How many whole minutes of ended-task counts the view keeps."""


class EndedPerMinute:
    """Counts of tasks that ended, per outcome, in the last `MINUTES` minutes."""

    def __init__(self) -> None:
        self._minutes: deque[tuple[int, dict[str, int]]] = deque(maxlen=MINUTES)

    def add(self, status: str, count: int = 1, *, now_s: float | None = None) -> None:
        minute = int((time.time() if now_s is None else now_s) // 60)
        if not self._minutes or self._minutes[-1][0] != minute:
            self._minutes.append((minute, {}))
        counts = self._minutes[-1][1]
        counts[status] = counts.get(status, 0) + count

    def series(self, *, now_s: float | None = None) -> list[dict[str, Any]]:
        """One row per minute of the last `MINUTES`, oldest first, gaps as zeros."""
        current = int((time.time() if now_s is None else now_s) // 60)
        known = dict(self._minutes)
        return [
            {"minute_ms": m * 60_000, **known.get(m, {})}
            for m in range(current - MINUTES + 1, current + 1)
        ]


def snapshot(
    *, instance_id: str, mode: str, registry: Registry, ended: EndedPerMinute, backlog: int
) -> bytes:
    now = time.monotonic()
    wall_ms = int(time.time() * 1000)
    workers = [
        {
            "worker_id": w.worker_id,
            "slots": w.slots,
            "busy": len(w.tasks) - w.prefetched,
            "prefetched": w.prefetched,
            "draining": w.draining,
            "joined_ms": w.joined_at_ms,
            "last_heartbeat_ms": wall_ms - int((now - w.last_seen) * 1000),
        }
        for w in registry.workers.values()
    ]
    return msgpack.packb(
        {
            "dispatcher": instance_id,
            "mode": mode,
            "at_ms": wall_ms,
            "backlog": backlog,
            "workers": workers,
            "ended_per_minute": ended.series(),
        }
    )
