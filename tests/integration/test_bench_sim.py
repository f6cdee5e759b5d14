"""`python -m bench.sim` runs: a real dispatcher and Redis serve simulated workers that
speak the wire protocol (BATCHes of results included), and every measured task ends."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_simulation_runs_its_tasks_through_a_real_dispatcher(tmp_path: Path) -> None:
    out = tmp_path / "sim.json"
    # 8 slots of 20 ms tasks (and as many prefetched, as real workers hold): 400 tasks/s
    # if the dispatcher keeps every slot busy
    done = subprocess.run(
        [sys.executable, "-m", "bench.sim", "--shapes", "2x4", "--task-ms", "20",
         "--duration-s", "2", "--warmup-s", "1", "--ceiling", "", "--prefetch", "slots",
         "--output", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads(out.read_text())["results"]["this"]
    assert row["shape"] == "2x4" and row["slots"] == 8
    # Loose: a loaded machine slows it, a broken protocol stops it
    assert row["efficiency"] > 0.3, row
    assert row["dispatcher_cpu_ms_per_task"] > 0
