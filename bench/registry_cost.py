"""`python -m bench.registry_cost [--compare REF]`: the dispatcher registry's cost alone.

Per dispatch: choose + assign + complete (release and grant back) + credits(), with
half the slots busy; per housekeeping tick: overdue() + silent_since(). No sockets, no
Redis: the figure is the registry's own, independent of the machine's other load.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from types import ModuleType

from common.store import QueueEntry

ROOT = Path(__file__).resolve().parent.parent


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def measure(registry_module: ModuleType, workers: int, slots: int, n: int) -> tuple[float, float]:
    """(dispatches per second, seconds per housekeeping tick)."""
    registry = registry_module.Registry()
    for i in range(workers):
        registry.grant(registry.add(b"w%d" % i, slots=slots, now=0), slots)
    held: deque = deque()
    start = time.perf_counter()
    for i in range(n):
        worker = registry.choose()
        task_id = f"t{i}"
        entry = QueueEntry("1-0", task_id, 1, "f", 1.0, b"")
        registry.assign(worker, registry_module.InFlight(entry, "", 1e9))
        held.append((worker, task_id))
        if len(held) > workers * slots // 2:
            done, done_id = held.popleft()
            if hasattr(registry, "release"):
                registry.release(done, done_id)
            else:  # before the indexes, the dispatcher deleted it itself
                del done.tasks[done_id]
            registry.grant(done, 1)
        registry.credits()
    per_dispatch = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(100):
        registry.overdue(1.0)
        registry.silent_since(-1.0)
    return per_dispatch, (time.perf_counter() - start) / 100


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.registry_cost", description=__doc__)
    parser.add_argument("--compare", metavar="REF", help="also a git ref's registry")
    parser.add_argument("--shapes", default="4x256,256x4,1024x4")
    parser.add_argument("-n", type=int, default=20000, help="dispatches per shape")
    args = parser.parse_args()
    sources = {"this": ROOT / "dispatcher" / "registry.py"}
    with tempfile.TemporaryDirectory() as tmp:
        if args.compare:
            old = Path(tmp) / "registry.py"
            show = ["git", "show", f"{args.compare}:dispatcher/registry.py"]
            old.write_bytes(subprocess.run(show, cwd=ROOT, check=True, capture_output=True).stdout)
            sources = {args.compare: old, **sources}
        for label, path in sources.items():
            module = _load(path, f"_registry_{len(sys.modules)}")
            for shape in args.shapes.split(","):
                workers, slots = (int(x) for x in shape.split("x"))
                rate, tick = measure(module, workers, slots, args.n)
                busy = workers * slots // 2
                print(f"{label:>12} {shape:>7}: {rate:>9,.0f} dispatches/s, "
                      f"tick {tick * 1e6:,.0f} us with {busy} in flight")  # fmt: skip


if __name__ == "__main__":
    main()
