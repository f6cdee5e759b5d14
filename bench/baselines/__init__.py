"""What a user would pick instead of this platform, run beside it by `python -m bench
--baselines ray,celery` (bench/sidebyside.py): each in a side process of its own
(bench/side.py) that starts the system, runs W1, W2 and W4 on command and stops it.
`floor` is not a product but this design at its thinnest (bench/baselines/floor.py):
its side holds it, and W1 and W4 are driven over HTTP as the platform's are."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Baseline:
    name: str
    modules: tuple[str, ...]
    """What must be importable to run it."""
    requirement: str | None
    """The pip requirement, as in pyproject.toml's `bench` extra (None: the platform's own)."""
    side: str
    """The module run as its side process."""


BASELINES = {
    "ray": Baseline("ray", ("ray",), "ray>=2.10", "bench.baselines.ray_side"),
    "celery": Baseline(
        "celery", ("celery", "redis"), "celery[redis]>=5.3", "bench.baselines.celery_side"
    ),
    # Only the platform's own dependencies: always there.
    "floor": Baseline("floor", ("zmq", "redis", "fastapi"), None, "bench.baselines.floor"),
}


def parse(text: str) -> list[str]:
    """'ray, celery' -> ['ray', 'celery'] (known names only, each once, in order)."""
    names: list[str] = []
    for part in text.split(","):
        name = part.strip().lower()
        if not name:
            continue
        if name not in BASELINES:
            raise ValueError(f"unknown baseline {name!r} (known: {', '.join(BASELINES)})")
        if name not in names:
            names.append(name)
    return names


def missing(name: str) -> str | None:
    """One line saying how to install a baseline that is not installed, else None."""
    baseline = BASELINES[name]
    absent = [m for m in baseline.modules if importlib.util.find_spec(m) is None]
    if not absent:
        return None
    return (f"{name}: {', '.join(absent)} not installed, skipped; install with: "
            f"pip install -e '.[bench]'  (or: pip install '{baseline.requirement}')")  # fmt: skip


def timed_s(fn: Callable[[], Any], n: int) -> list[float]:
    """Seconds per call of fn, n calls one after the other."""
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def throughput(n: int, seconds: float, values: list[Any]) -> dict[str, Any]:
    """W2's figures, with the same audit as the platform's (lost, duplicated results)."""
    return {
        "tasks": n,
        "seconds": round(seconds, 3),
        "tasks_per_s": round(n / seconds),
        "lost": n - len(set(values) & set(range(n))),
        "duplicated_results": len(values) - len(set(values)),
    }
