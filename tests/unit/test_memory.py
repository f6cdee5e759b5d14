"""common.memory in a fresh interpreter: freed payload memory is reused, not faulted
in again for every copy."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import os, pickle, resource, sys
from common.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
blob = os.urandom(2**20)
for _ in range(5):
    pickle.loads(pickle.dumps(blob))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    pickle.loads(pickle.dumps(blob))
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50)
"""


def faults_per_copy(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         check=True, timeout=60)  # fmt: skip
    return float(out.stdout)


def test_freed_memory_is_kept_for_the_next_payload() -> None:
    assert faults_per_copy("default") > 100  # glibc's own thresholds: fresh pages each time
    assert faults_per_copy("keep") < 10
