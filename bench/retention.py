"""`python -m bench.retention [--tasks N]`: what a finished task keeps in Redis.

Starts a platform (local mode, real redis-server), runs N no-op tasks in batches
through the gateway, waits until all ended, then finds every key under the key prefix
(SCAN) and sums MEMORY USAGE (SAMPLES 0: all of each key). Bytes per retained task are
what the sum grew by, over N: the task's hash, its share of the listing index and of
the queue stream, and any key a task leaves that we forgot about. A warm-up run first
puts the one-off keys (the function, the streams' first nodes, the worker numbers) in
the baseline. Also reports Redis's `used_memory` growth per task, which adds what
MEMORY USAGE leaves out (the expiry entry of each key, the key table's growth) and
is noisier. Writes bench/results/<date>-retention.json.
"""

from __future__ import annotations

import argparse
import base64
import collections
import datetime
import sys
import tempfile
from pathlib import Path
from typing import Any

import cloudpickle
import httpx
import redis

from bench.__main__ import RESULTS_DIR, _write, machine
from faas.platform import LocalPlatform, PlatformConfig, free_port

BATCH = 500


def footprint(client: redis.Redis, prefix: str) -> dict[str, int]:
    """MEMORY USAGE of every key under `prefix`, found by SCAN."""
    keys = [k.decode() for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    return {k: client.memory_usage(k, samples=0) or 0 for k in keys}


def growth(before: dict[str, int], after: dict[str, int], tasks: int) -> dict[str, Any]:
    """Bytes and keys per task between two footprints, in all and by kind of key (the
    part after the prefix, ids left out)."""
    by_kind: dict[str, float] = collections.defaultdict(float)
    for key, size in after.items():
        by_kind[key.split(":")[1]] += (size - before.get(key, 0)) / tasks
    return {
        "bytes_per_task": round((sum(after.values()) - sum(before.values())) / tasks, 1),
        "keys_per_task": round((len(after) - len(before)) / tasks, 3),
        # Kinds of the new keys other than tasks' own: what else the window created.
        "new_keys_not_tasks": sorted(
            {k.split(":")[1] for k in after if k not in before and k.split(":")[1] != "task"}
        ),
        "bytes_per_task_by_kind": {k: round(v, 1) for k, v in sorted(by_kind.items()) if v},
    }


def run_noops(http: httpx.Client, function_id: str, tasks: int) -> None:
    """`tasks` no-op calls in batches, each batch waited for until all ended."""
    payload = base64.b64encode(cloudpickle.dumps(((), {}))).decode()
    for start in range(0, tasks, BATCH):
        body = {"function_id": function_id, "payloads": [payload] * min(BATCH, tasks - start)}
        ids = http.post("/v1/tasks/batch", json=body).raise_for_status().json()["task_ids"]
        views = http.post("/v1/tasks/wait", json={"task_ids": ids, "wait": 60})
        ended = [v for v in views.raise_for_status().json()["tasks"] if v["status"] == "COMPLETED"]
        if len(ended) != len(ids):
            raise RuntimeError(f"{len(ids) - len(ended)} of {len(ids)} tasks did not complete")


def measure(platform: LocalPlatform, tasks: int, *, warmup: int = 20) -> dict[str, Any]:
    """Run `tasks` no-ops on a running platform and say what they left in Redis."""
    admin = redis.Redis.from_url(platform.redis_url)
    prefix = platform.config.key_prefix
    with httpx.Client(base_url=platform.url, timeout=120) as http:
        noop = base64.b64encode(cloudpickle.dumps(lambda: None)).decode()
        registered = http.post("/v1/functions", json={"name": "noop", "payload": noop})
        function_id = registered.raise_for_status().json()["function_id"]
        run_noops(http, function_id, warmup)
        before, memory_before = footprint(admin, prefix), admin.info("memory")["used_memory"]
        run_noops(http, function_id, tasks)
        after, memory_after = footprint(admin, prefix), admin.info("memory")["used_memory"]
    sample = next(k for k in after if k not in before and k.startswith(f"{prefix}:task:"))
    return {
        "redis": admin.info("server")["redis_version"],
        "tasks": tasks,
        **growth(before, after, tasks),
        "used_memory_growth_per_task": round((memory_after - memory_before) / tasks, 1),
        "task_hash": {
            "encoding": admin.object("encoding", sample).decode(),
            "fields": sorted(f.decode() for f in admin.hkeys(sample)),
            "memory_usage": admin.memory_usage(sample, samples=0),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.retention",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()
    stamp = datetime.datetime.now(datetime.UTC)
    with tempfile.TemporaryDirectory(prefix="faas-bench-") as tmp:
        config = PlatformConfig(
            port=free_port(), data_dir=Path(tmp) / "data", log_dir=Path(tmp) / "logs", slots=4
        )
        with LocalPlatform(config) as platform:
            figures = measure(platform, args.tasks)
    report = {
        "date": stamp.isoformat(timespec="seconds"),
        "machine": machine(),
        "command": " ".join(["python -m bench.retention", *sys.argv[1:]]),
        **figures,
    }
    _write(report, args.out / f"{stamp:%Y-%m-%dT%H%M%S}-retention.json")


if __name__ == "__main__":
    main()
