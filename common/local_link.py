"""Local mode's worker link: the worker loop runs on the dispatcher's own event loop
(dispatcher.local), and the wire messages between them are handed over in memory.

Why: every process a task crosses costs a wake-up, and on these machines one costs
0.2-0.4 ms (`perf sched timehist` of W1). Over ZeroMQ a message also crossed the
sender's I/O thread and the receiver's, four more thread wake-ups per task; a
socketpair removed those, and hosting the loop here removes the worker process from
the path altogether: a TASK goes from the dispatcher to the slot's pipe, and the
slot's result comes back to the dispatcher, with no process in between. The frames
are the same messages, checked by the same `wire.unpack`, and are passed by
reference (a 1 MB payload is not copied on the way).

The two ends keep the interfaces their users already have: the worker's end the
DEALER socket's (`send_multipart`, `recv_multipart(NOBLOCK)` raising zmq.Again), the
dispatcher's end its ROUTER's (dispatcher.router: the worker's identity first).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence

import zmq


class PeerGone(ConnectionError):
    """A message for a worker that is not at this end of the link."""


class WorkerEnd:
    def __init__(self, deliver: Callable[[list[bytes]], None]) -> None:
        self._deliver = deliver  # to the dispatcher
        self.inbox: deque[list[bytes]] = deque()

    def send_multipart(self, frames: Sequence[bytes], copy: bool = False) -> None:
        del copy  # never: the frames are passed as they are
        self._deliver(list(frames))

    def recv_multipart(self, flags: int = zmq.NOBLOCK) -> list[bytes]:
        """The next message; zmq.Again if there is none (it never waits)."""
        del flags
        if not self.inbox:
            raise zmq.Again()
        return self.inbox.popleft()

    def close(self, linger: int = 0) -> None:
        del linger


class DispatcherEnd:
    """The dispatcher's end: the ROUTER interface of dispatcher.router, for one worker."""

    def __init__(self, identity: bytes, worker: WorkerEnd, wake_worker: Callable[[], None]):
        self._identity = identity
        self._worker = worker
        self._wake_worker = wake_worker  # schedules the worker loop's next turn
        self._inbox: deque[list[bytes]] = deque()
        self._readable = asyncio.Event()

    def deliver(self, frames: list[bytes]) -> None:
        """From the worker."""
        self._inbox.append(frames)
        self._readable.set()

    async def readable(self) -> None:
        """Return once a message can be received."""
        while not self._inbox:
            self._readable.clear()
            await self._readable.wait()

    def receive(self, *, copy: bool = True) -> list[bytes] | None:
        """The next message, the worker's identity first; None if none is waiting."""
        del copy
        if not self._inbox:
            return None
        return [self._identity, *self._inbox.popleft()]

    def send(self, frames: list) -> None:
        """To the worker whose identity is the first frame; PeerGone for any other."""
        if frames[0] != self._identity:
            raise PeerGone("no such worker in this process")
        self._worker.inbox.append(frames[1:])
        self._wake_worker()

    def close(self) -> None:
        self._inbox.clear()
