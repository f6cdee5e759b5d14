"""`python -m bench.nested`: what a call from inside a running function costs.

A registered parent calls a no-op child N times in a loop and times each call with
`time.perf_counter` inside its slot, so the figures are the in-slot latency alone
(no HTTP, no client). Per mode, in interleaved rounds:
  call      `child(x)`: a task, queued, run in another slot, committed, answered
  submit    `child.submit(x).result()`: the same in two messages
  map10     `child.map(range(10))`: ten tasks in one call (per call, not per task)
  inline    `child.options(inline=True)(x)`: a plain call in the caller's slot
Results as JSON in bench/results/ (machine, date, command).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.__main__ import machine
from common.models import DispatchMode
from faas import Client
from faas.platform import LocalPlatform, PlatformConfig, free_port

RESULTS_DIR = Path(__file__).resolve().parent / "results"
KINDS = ("call", "submit", "map10", "inline")


def make_parent(client: Client) -> Any:
    child = client.register(lambda x: x)
    inline = child.options(inline=True)

    def parent(kind: str, n: int) -> list[float]:
        import time

        calls = {
            "call": lambda i: child(i),
            "submit": lambda i: child.submit(i).result(),
            "map10": lambda i: child.map(range(10)),
            "inline": lambda i: inline(i),
        }
        call, took = calls[kind], []
        for i in range(n):
            start = time.perf_counter()
            call(i)
            took.append(time.perf_counter() - start)
        return took

    return client.register(parent)


def summary(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 3),
        "p90_ms": round(ms[int(len(ms) * 0.9)], 3),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 3),
    }


def run_mode(mode: DispatchMode, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        config = PlatformConfig(mode=mode, workers=1, slots=args.slots, port=free_port(),
                                data_dir=Path(tmp), log_dir=Path(tmp) / "logs")  # fmt: skip
        with LocalPlatform(config) as platform, Client(platform.url) as client:
            parent = make_parent(client)
            for kind in KINDS:  # warm up: spare slots forked, code fetched
                parent(kind, 20)
            took: dict[str, list[float]] = {kind: [] for kind in KINDS}
            for _ in range(args.rounds):
                for kind in KINDS:
                    took[kind] += parent(kind, args.n)
    return {kind: summary(seconds) for kind, seconds in took.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.nested",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--modes", default="local,pull", help="comma-separated: local,pull,push")
    parser.add_argument("--n", type=int, default=200, help="calls per kind and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--out", type=Path, help="JSON path (default: bench/results/)")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "machine": machine(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.nested " + " ".join(sys.argv[1:]),
        "modes": {},
    }
    for mode in args.modes.split(","):
        figures = report["modes"][mode] = run_mode(DispatchMode(mode), args)
        for kind, f in figures.items():
            print(f"[{mode}] {kind:7} p50 {f['p50_ms']:8.3f} ms  p90 {f['p90_ms']:8.3f}  "
                  f"p99 {f['p99_ms']:8.3f}", flush=True)  # fmt: skip
    stamp = datetime.datetime.now().strftime("%Y-%m-%dT%H%M%S")
    out = args.out or RESULTS_DIR / f"{stamp}-nested.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
