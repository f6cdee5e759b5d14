"""Checks payloads off the event loop, in a separate process.

The structural pickle check is pure Python (`common.payloads`): a 16 MiB pickle of
one-byte opcodes costs about 0.4 s of CPU even with the opcode cap. In a thread it
would hold the GIL the event loop needs, so /healthz and every other request would
stall with it; in a process it costs the loop only copying the text out and the
bytes back. Small payloads, the common case, are checked in place: a process hop
costs more than their check.

The processes are spawned, so, as with any multiprocessing spawn, they import the
server's main module: `python -m gateway` is safe; a script of your own that starts
the server must do so under `if __name__ == "__main__":`.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from common import payloads
from common.errors import InvalidPayload

R = TypeVar("R")

INLINE_CHARS = 16 * 1024
"""Payload text up to this size (a few ms of checking at worst) is checked in place."""
INLINE_OPCODES = 10_000
"""Raw pickles are first checked in place up to this many opcodes (~2 ms): a large
pickle of one bytes object or array is a handful of opcodes, checked at once without
copying it to another process; only one with more opcodes goes there."""


def decode_all(texts: Sequence[str], max_bytes: int, max_opcodes: int) -> list[bytes]:
    return [payloads.decode(t, max_bytes=max_bytes, max_opcodes=max_opcodes) for t in texts]


def check_raw(data: bytes, max_opcodes: int) -> bytes:
    payloads.check_pickle(data, max_opcodes=max_opcodes)
    return data


class PayloadChecker:
    def __init__(self, *, max_bytes: int, max_opcodes: int, processes: int = 2) -> None:
        self.max_bytes = max_bytes
        self.max_opcodes = max_opcodes
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None

    async def decode(self, texts: Sequence[str]) -> list[bytes]:
        """The payloads' bytes, or InvalidPayload naming what is wrong."""
        if sum(len(t) for t in texts) <= INLINE_CHARS:
            return decode_all(texts, self.max_bytes, self.max_opcodes)
        return await self._in_process(decode_all, texts, self.max_bytes, self.max_opcodes)

    async def check(self, data: bytes) -> bytes:
        """A raw pickle (no base64), checked the same way: `data`, or InvalidPayload."""
        if not data:
            raise InvalidPayload("payload is empty")
        if len(data) > self.max_bytes:
            raise InvalidPayload(f"payload is larger than {self.max_bytes} bytes")
        try:
            return check_raw(data, min(INLINE_OPCODES, self.max_opcodes))
        except payloads.TooManyOpcodes:
            if self.max_opcodes <= INLINE_OPCODES:
                raise
        return await self._in_process(check_raw, data, self.max_opcodes)

    async def _in_process(self, check: Callable[..., R], *args: Any) -> R:
        for _attempt in range(2):  # a pool whose process died is replaced once
            pool = self._pool or self._start()
            loop = asyncio.get_running_loop()
            try:  # submit raises it too, once the pool knows it is broken
                return await loop.run_in_executor(pool, check, *args)
            except BrokenProcessPool:
                if self._pool is pool:
                    self._pool = None
                    pool.shutdown(wait=False, cancel_futures=True)
        raise InvalidPayload("payload could not be checked: the checking process died")

    async def start(self) -> None:
        """Start the processes now rather than in a request (the pool starts one per
        call submitted while none is idle, so submit one call per process at once)."""
        pool = self._pool or self._start()
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(pool, int) for _ in range(self.processes)))

    def _start(self) -> ProcessPoolExecutor:
        # spawn, not fork: the gateway has threads and an event loop a fork would copy.
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(self.processes, mp_context=context)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
