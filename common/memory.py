"""Keep freed memory for reuse instead of handing it back to the kernel at once.

glibc gives a freed block of 128 KiB or more back to the kernel (it was mmap'ed), and
trims the heap when more than twice that is free at its top. A process that copies a
1 MB payload a few times per task then writes every copy onto fresh pages: a page fault
per 4 KiB, about 4 us each on a cloud VM, so about 1 ms of CPU per MB copied (measured:
~270 faults per 1 MB echo in a slot, ~85 in the dispatcher). With these limits a
process keeps up to TRIM_THRESHOLD of freed heap for the next task; blocks over
MMAP_THRESHOLD still go back at once, so one huge payload is not kept.
"""

from __future__ import annotations

import contextlib
import ctypes

_M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 16 * 2**20
TRIM_THRESHOLD = 32 * 2**20


def keep_freed_memory() -> bool:
    """Raise glibc's thresholds in this process (and those it forks); False where the
    C library has no mallopt (musl's ignores it: also False)."""
    with contextlib.suppress(OSError, AttributeError):
        mallopt = ctypes.CDLL(None).mallopt
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        return bool(
            mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
            and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        )
    return False
