from __future__ import annotations

import time

from faas.views import worker_line


def test_a_worker_line_says_what_it_holds_beyond_its_slots() -> None:
    w = {"worker_id": "w", "slots": 2, "busy": 2, "prefetched": 1, "draining": False,
         "last_heartbeat_ms": time.time() * 1000}  # fmt: skip
    assert " 2/2 busy, 1 held  seen " in worker_line(w)
    assert "held" not in worker_line({**w, "prefetched": 0})
    assert "held" not in worker_line({k: v for k, v in w.items() if k != "prefetched"})
