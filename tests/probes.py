"""Measurements that tests run inside the processes they check (a slot, a fresh
interpreter)."""

from __future__ import annotations

import os
import pickle
import resource


def page_faults_per_megabyte_copy() -> float:
    """Minor page faults per pickle round trip of 1 MB, once warm: 0 when freed memory
    is reused (common.memory), about 256 (a page per 4 KiB) when it goes back to the
    kernel."""
    blob = os.urandom(2**20)
    for _ in range(5):
        pickle.loads(pickle.dumps(blob))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        pickle.loads(pickle.dumps(blob))
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50
