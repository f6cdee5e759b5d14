"""common.memory in a fresh interpreter: freed payload memory is reused, not faulted
in again for every copy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import sys
from common.memory import keep_freed_memory
from tests.probes import page_faults_per_megabyte_copy
if sys.argv[1] == "keep":
    assert keep_freed_memory()
print(page_faults_per_megabyte_copy())
"""


def faults_per_copy(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         check=True, timeout=60, cwd=ROOT)  # fmt: skip
    return float(out.stdout)


def test_freed_memory_is_kept_for_the_next_payload() -> None:
    assert faults_per_copy("default") > 100  # glibc's own thresholds: fresh pages each time
    assert faults_per_copy("keep") < 10
