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


def test_raw_pickles_are_checked_in_place_unless_they_have_many_opcodes() -> None:
    from gateway.checker import INLINE_OPCODES

    large_bytes = pickle.dumps(((os.urandom(2**20),), {}))  # a few opcodes
    many = pickle.dumps(list(range(INLINE_OPCODES)))

    async def scenario() -> None:
        checker = PayloadChecker(max_bytes=2**24, max_opcodes=10**6, processes=1)
        try:
            assert await checker.check(large_bytes) == large_bytes
            assert checker._pool is None  # one bytes object: no process needed
            assert await checker.check(many) == many
            assert checker._pool is not None  # past the in-place budget: checked there
            for bad, why in [(b"", "empty"), (b"junk", "pickle"), (many + b"x", "trailing"),
                             (b"\x80\x04" + b"N" * (10**6 + 1) + b".", "opcodes")]:  # fmt: skip
                with pytest.raises(InvalidPayload, match=why):
                    await checker.check(bad)
            small = PayloadChecker(max_bytes=10, max_opcodes=10**6, processes=1)
            with pytest.raises(InvalidPayload, match="larger than 10 bytes"):
                await small.check(large_bytes)
        finally:
            checker.close()

    asyncio.run(scenario())
