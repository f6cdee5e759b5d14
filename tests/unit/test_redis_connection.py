from __future__ import annotations

from redis.asyncio import Connection

from common.redis_connection import HiredisConnection


def test_hiredis_packs_the_bytes_redis_py_packs() -> None:
    ours, theirs = HiredisConnection(), Connection()
    for args in (
        ("EVALSHA", "f" * 40, 3, b"k1", "k2", 1.5, 0, -3, 2**62, b"\x00\xff" * 10, "é"),
        ("CONFIG GET", "maxmemory"),  # a name with a literal argument
        (b"XREADGROUP GROUP", b"g", b"c"),
        ("SET", b"blob", b"x" * 200_000),  # large: redis-py's own chunks
    ):
        assert b"".join(ours.pack_command(*args)) == b"".join(theirs.pack_command(*args))
    chunks = ours.pack_command("SET", b"blob", b"x" * 200_000)
    assert len(chunks) > 1, "a large value is sent as its own chunk, not copied"
