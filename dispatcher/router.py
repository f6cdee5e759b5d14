"""The dispatcher's ROUTER socket on the asyncio loop, without zmq.asyncio.

zmq.asyncio wraps every send in a Future and, while a receive is pending (the serve
loop always has one), schedules another pass over the socket's events after it: at
the dispatcher's ceiling that was a quarter of its time (py-spy during
`python -m bench.sim --shapes 256x4`). A ROUTER send never waits: with no high-water
mark (SNDHWM 0: what is queued per worker is bounded by its credits) it queues or,
with ROUTER_MANDATORY, raises at once for a peer that is gone. So sends here are plain
non-blocking calls, and only receiving waits, on the socket's file descriptor.

ZeroMQ signals that descriptor edge-triggered, and any operation on the socket may
consume the edge while leaving messages to read. So the descriptor only prompts a
look at the socket's EVENTS, which is also checked before every wait and once after
the sends of a loop turn (a callback queued by the first; it runs before the loop
can sleep): a message is never left unread while the loop sleeps.
"""

from __future__ import annotations

import asyncio

import zmq

# Plain ints: pyzmq's flag enums cost an Enum operation per frame (5% of the
# dispatcher's CPU at its ceiling, in send_multipart and recv_multipart).
_NOBLOCK = int(zmq.NOBLOCK)
_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_BIG = 64 * 1024  # larger frames are sent without a copy


class Router:
    def __init__(self, socket: zmq.Socket) -> None:
        socket.setsockopt(zmq.SNDHWM, 0)
        self.socket = socket
        self._readable = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._fd = socket.getsockopt(zmq.FD)
        self._loop.add_reader(self._fd, self._check)
        self._check_queued = False

    def _check(self) -> None:
        self._check_queued = False
        if self.socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self._readable.set()

    async def readable(self) -> None:
        """Return once a message can be received."""
        while not self.socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self._readable.clear()
            await self._readable.wait()

    def receive(self, *, copy: bool) -> list | None:
        """The next message's frames (bytes if `copy`, else zmq.Frame), or None if
        there is none now. Each frame says whether more follow (`more`): asking the
        socket instead (RCVMORE) costs pyzmq an option lookup per frame."""
        recv = self.socket.recv
        try:
            frame = recv(_NOBLOCK, copy=False)
        except zmq.Again:
            return None
        parts = [frame]
        while frame.more:  # the rest of a message is there with its start
            frame = recv(_NOBLOCK, copy=False)
            parts.append(frame)
        return [p.bytes for p in parts] if copy else parts

    def send(self, frames: list) -> None:
        """Queue a message; zmq.ZMQError (EHOSTUNREACH) if its peer is gone."""
        send = self.socket.send
        try:
            for frame in frames[:-1]:
                send(frame, _MORE, copy=len(frame) < _BIG)
            send(frames[-1], _NOBLOCK, copy=len(frames[-1]) < _BIG)
        finally:
            if not self._check_queued:
                self._check_queued = True
                self._loop.call_soon(self._check)

    def close(self) -> None:
        self._loop.remove_reader(self._fd)
        self.socket.close(linger=0)
