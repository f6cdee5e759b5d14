"""`python -m bench.payloads [--compare REF] [--rounds R] [--n N]`: what a payload costs.

W1 (a no-op, one synchronous JSON request) and W4 (echo of 1 MB of bytes): p50 in ms
and the platform's CPU ms per call (all its processes, Redis too: steadier than
wall-clock time on a loaded machine), through JSON (`POST /v1/tasks?wait`, base64), the
binary form (raw pickles, when the checkout has it) and the SDK (`fn(blob)`, whichever
form its SDK uses). `--compare REF` also runs a git ref's checkout (its platform and its
SDK), alternating with this one round by round so both see the same machine load; the
report has each side's median over the rounds and this/REF ratios. Writes
bench/results/<date>-payloads.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.__main__ import RESULTS_DIR, _write, machine
from bench.checkout import ROOT, checkout

SIDE = Path(__file__).with_name("payload_side.py")


def run_side(tree: Path, n: int, scratch: Path) -> dict[str, float]:
    """One platform of `tree`, measured; its figures."""
    out = subprocess.run([sys.executable, "-c", SIDE.read_text(), str(n), str(scratch)],
                         cwd=tree, capture_output=True, text=True, timeout=900)  # fmt: skip
    if out.returncode:
        raise RuntimeError(f"{tree}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.payloads",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--compare", metavar="REF", help="also a git ref's checkout, interleaved")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=30, help="W4 calls per round (W1: 5x)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()
    stamp = datetime.datetime.now(datetime.UTC)
    rounds: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="faas-bench-") as tmp:
        trees = {"this": ROOT}
        with contextlib.ExitStack() as stack:
            if args.compare:
                trees[args.compare] = stack.enter_context(checkout(args.compare, Path(tmp)))
            for r in range(args.rounds):
                for side, tree in trees.items():
                    scratch = Path(tmp) / f"{side.replace('/', '_')}-{r}"
                    figures = run_side(tree, args.n, scratch)
                    print(f"round {r + 1} {side}: {figures}", flush=True)
                    rounds.setdefault(side, []).append(figures)
    medians = {side: {k: round(statistics.median(f[k] for f in rs), 3) for k in rs[0]}
               for side, rs in rounds.items()}  # fmt: skip
    report = {
        "date": stamp.isoformat(timespec="seconds"),
        "machine": machine(),
        "command": "python -m bench.payloads " + " ".join(sys.argv[1:]),
        "medians": medians,
        "rounds": rounds,
    }
    if args.compare:
        this, ref = medians["this"], medians[args.compare]
        same = {name: (name, name) for name in ("W4_sdk", "W4_json", "W1", "W1_sdk")}
        pairs = {"W4_binary_over_ref_json": ("W4_binary", "W4_json"), **same}
        report[f"this_over_{args.compare}"] = {
            f"{name}_{unit}": round(this[f"{a}_{unit}"] / ref[f"{b}_{unit}"], 3)
            for name, (a, b) in pairs.items()
            for unit in ("p50_ms", "cpu_ms")
        }
    print(json.dumps({k: v for k, v in report.items() if k != "rounds"}, indent=2))
    _write(report, args.out / f"{stamp:%Y-%m-%dT%H%M%S}-payloads.json")


if __name__ == "__main__":
    main()
