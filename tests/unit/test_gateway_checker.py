"""The payload checker: small payloads in place, large ones in its processes, and a
process that dies is replaced rather than failing every later request."""

from __future__ import annotations

import asyncio
import base64
import os
import pickle
import signal

import pytest

from common.errors import InvalidPayload
from gateway.checker import INLINE_CHARS, PayloadChecker


def _text(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_small_in_place_large_in_a_process_and_a_dead_process_is_replaced() -> None:
    small = pickle.dumps([1, 2, 3])
    large = pickle.dumps(list(range(INLINE_CHARS)))
    assert len(_text(large)) > INLINE_CHARS

    async def scenario() -> None:
        checker = PayloadChecker(max_bytes=2**24, max_opcodes=10**6, processes=1)
        try:
            assert await checker.decode([_text(small)]) == [small]
            assert checker._pool is None  # nothing started for a small payload

            await checker.start()
            assert await checker.decode([_text(large)]) == [large]
            with pytest.raises(InvalidPayload, match="opcodes"):
                await checker.decode([_text(b"\x80\x04" + b"N" * (10**6 + 1) + b".")])

            pool = checker._pool
            assert pool is not None
            for pid in list(pool._processes):  # as the OOM killer would
                os.kill(pid, signal.SIGKILL)
            assert await checker.decode([_text(large)]) == [large]
            assert checker._pool is not pool
            # Once the pool knows it is broken, submitting to it raises at once: same answer.
            broken = checker._pool
            assert broken is not None
            for pid in list(broken._processes):
                os.kill(pid, signal.SIGKILL)
            while not broken._broken:  # the pool's own thread notices within milliseconds
                await asyncio.sleep(0.01)
            assert await checker.decode([_text(large)]) == [large]
        finally:
            checker.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
