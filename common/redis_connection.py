"""A Redis connection that packs commands with hiredis.

redis-py's asyncio `Connection` packs every command in Python, even with hiredis
installed (only the sync client uses hiredis for that): 12% of the dispatcher's CPU
at its ceiling (py-spy during `python -m bench.sim --shapes 256x4`), about 8 us per
finish.lua call against 1.7 us for `hiredis.pack_command`, which yields the same
bytes. Commands with a large value keep redis-py's packing, which sends the value
as its own chunk instead of copying it into one buffer.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio import Connection

_LARGE = 64 * 1024


class HiredisConnection(Connection):
    def pack_command(self, *args: Any) -> list[bytes]:
        if any(isinstance(a, bytes | memoryview) and len(a) > _LARGE for a in args):
            return super().pack_command(*args)
        # As redis-py does: a command name may carry literal arguments ("CONFIG GET").
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        return [hiredis.pack_command(args)]
