"""Local mode's worker link: a socketpair between the dispatcher and the worker child
it starts, carrying the same wire messages as the ZeroMQ link of remote workers.

Why not ZeroMQ here: a ZeroMQ message is handed to the sender's I/O thread and comes
out of the receiver's, two thread wake-ups each way, four per task, on the critical
path of every call (`perf sched timehist` of W1: about 0.3 ms each way on these
machines). Over a socketpair the kernel wakes the receiving process directly. The
pair is made by the dispatcher and inherited by its child alone: there is no path
on disk and no port, so nothing else can connect and nothing needs CURVE.

A message is its frame count, each frame's length (little-endian u32s), then the
frames. The worker's end is blocking for sends (as its DEALER was at its high-water
mark) and reads only what is there; the dispatcher's end never blocks: what the
kernel cannot take yet waits for the socket to be writable, in order.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections import deque
from collections.abc import Sequence

import zmq

_READ_BYTES = 256 * 1024
_MAX_FRAMES = 64
_MAX_MESSAGE_BYTES = 1 << 31

Buffer = bytes | bytearray | memoryview


class PeerGone(ConnectionError):
    """The other end closed the link, or a message was for a peer it does not reach."""


def _encode(frames: Sequence[Buffer]) -> list[Buffer]:
    lengths = [len(f) for f in frames]
    return [struct.pack(f"<{len(lengths) + 1}I", len(lengths), *lengths), *frames]


class _Decoder:
    """Complete messages out of a byte stream."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[list[bytes]]:
        buffer = self._buffer
        buffer += data
        messages = []
        start = 0
        view = memoryview(buffer)
        try:
            while len(buffer) - start >= 4:
                (count,) = struct.unpack_from("<I", buffer, start)
                if not 0 < count <= _MAX_FRAMES:
                    raise PeerGone(f"a message of {count} frames: the link is out of step")
                head = 4 + 4 * count
                if len(buffer) - start < head:
                    break
                lengths = struct.unpack_from(f"<{count}I", buffer, start + 4)
                size = head + sum(lengths)
                if size > _MAX_MESSAGE_BYTES:
                    raise PeerGone(f"a message of {size} bytes: the link is out of step")
                if len(buffer) - start < size:
                    break
                at = start + head
                frames = []
                for length in lengths:
                    frames.append(bytes(view[at : at + length]))
                    at += length
                messages.append(frames)
                start += size
        finally:
            view.release()
        del buffer[:start]
        return messages


def pair() -> tuple[socket.socket, socket.socket]:
    """(the dispatcher's end, the worker's end, inheritable)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.set_inheritable(True)
    return ours, theirs


class WorkerEnd:
    """The worker's end (inherited as a file descriptor): what its loop does with a
    DEALER socket, by the same names, so the loop serves either link."""

    def __init__(self, fd: int) -> None:
        self._socket = socket.socket(fileno=fd)
        self._socket.setblocking(True)
        self._decoder = _Decoder()
        self._ready: deque[list[bytes]] = deque()

    def fileno(self) -> int:  # zmq.Poller polls it like a socket
        return self._socket.fileno()

    def send_multipart(self, frames: Sequence[Buffer], copy: bool = False) -> None:
        del copy  # always without one: sendmsg gathers the frames
        buffers = [memoryview(b).cast("B") for b in _encode(frames)]
        while buffers:
            try:
                sent = self._socket.sendmsg(buffers)
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise PeerGone("the dispatcher closed the link") from exc
            while buffers and sent >= len(buffers[0]):
                sent -= len(buffers.pop(0))
            if sent:
                buffers[0] = buffers[0][sent:]

    def recv_multipart(self, flags: int = zmq.NOBLOCK) -> list[bytes]:
        """The next message; zmq.Again if none has arrived whole (it never waits:
        `flags` must be NOBLOCK), PeerGone once the dispatcher is gone."""
        assert flags == zmq.NOBLOCK, "the worker loop polls before it reads"
        if not self._ready:
            while True:
                try:
                    data = self._socket.recv(_READ_BYTES, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                if not data:
                    raise PeerGone("the dispatcher closed the link")
                self._ready.extend(self._decoder.feed(data))
                if len(data) < _READ_BYTES:
                    break
        if not self._ready:
            raise zmq.Again()
        return self._ready.popleft()

    def close(self, linger: int = 0) -> None:
        del linger  # what was sent is in the kernel already
        self._socket.close()


class DispatcherEnd:
    """The dispatcher's end, with its ROUTER's interface (dispatcher.router): messages
    come with the worker's identity first, and go to it by that identity. The worker
    is restarted on a new pair (`attach`) if it dies."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._socket: socket.socket | None = None
        self._identity = b""
        self._decoder = _Decoder()
        self._ready: deque[list[bytes]] = deque()
        self._readable = asyncio.Event()
        self._unsent: deque[memoryview] = deque()

    def attach(self, end: socket.socket, identity: bytes) -> None:
        """Serve this end of a new pair, for the worker of this identity."""
        self.close()
        end.setblocking(False)
        self._socket, self._identity = end, identity
        self._decoder = _Decoder()
        self._loop.add_reader(end.fileno(), self._read)

    def _read(self) -> None:
        assert self._socket is not None
        while True:
            try:
                data = self._socket.recv(_READ_BYTES)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:  # the worker is gone: its end closed with it
                self.close()
                break
            try:
                self._ready.extend(self._decoder.feed(data))
            except PeerGone:
                self.close()
                break
            if len(data) < _READ_BYTES:
                break
        if self._ready:
            self._readable.set()

    async def readable(self) -> None:
        """Return once a message can be received."""
        while not self._ready:
            self._readable.clear()
            await self._readable.wait()

    def receive(self, *, copy: bool = True) -> list[bytes] | None:
        """The next message, its sender's identity first; None if none is waiting."""
        del copy
        if not self._ready:
            return None
        return [self._identity, *self._ready.popleft()]

    def send(self, frames: list) -> None:
        """Queue a message for the identity in its first frame; PeerGone if that
        worker is not (or no longer) at this end."""
        if self._socket is None or frames[0] != self._identity:
            raise PeerGone("no such worker on the local link")
        waiting = bool(self._unsent)  # then the socket's writability sends it after those
        self._unsent.extend(memoryview(b).cast("B") for b in _encode(frames[1:]))
        if not waiting:
            self._write()

    def _write(self) -> None:
        assert self._socket is not None
        unsent = self._unsent
        while unsent:
            try:
                sent = self._socket.sendmsg(list(unsent)[:_MAX_FRAMES])
            except BlockingIOError:
                break
            except OSError:  # the worker is gone; its restart gets a new pair
                self.close()
                return
            while unsent and sent >= len(unsent[0]):
                sent -= len(unsent.popleft())
            if sent:
                unsent[0] = unsent[0][sent:]
        if unsent:
            self._loop.add_writer(self._socket.fileno(), self._write)
        else:
            self._loop.remove_writer(self._socket.fileno())

    def close(self) -> None:
        if self._socket is not None:
            self._loop.remove_reader(self._socket.fileno())
            self._loop.remove_writer(self._socket.fileno())
            self._socket.close()
            self._socket = None
        self._unsent.clear()
