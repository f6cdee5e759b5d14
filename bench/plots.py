"""The side-by-side benchmark's figure: latency distributions (W1, W4) and throughput
(W2) per system. Needs matplotlib (the `bench` extra); without it, says so and skips.
`python -m bench.plots RESULT.json` draws it again from a result file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def side_by_side(report: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no PNG: matplotlib is not installed (pip install -e '.[bench]')")
        return None
    samples: dict[str, dict[str, list[float]]] = report["samples_ms"]
    medians: dict[str, dict[str, float]] = report["medians"]
    fig, (w1, w4, w2) = plt.subplots(1, 3, figsize=(16, 5))
    for ax, key, title in ((w1, "W1", "W1 no-op, sequential"), (w4, "W4", "W4 1 MB echo")):
        for name, kept in samples.items():
            ms = sorted(kept[key])
            if ms:
                ax.plot(ms, [(i + 1) / len(ms) for i in range(len(ms))], label=name)
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log)")
        ax.set_ylabel("fraction of calls")
        ax.set_title(f"{title}: latency CDF, all rounds")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    names = [n for n in medians if "W2_batch_tasks_per_s" in medians[n]]  # the floor has none
    batch = [medians[n]["W2_batch_tasks_per_s"] for n in names]
    per_request = [medians[n].get("W2_per_request_tasks_per_s", 0) for n in names]
    xs = range(len(names))
    w2.bar([x - 0.2 for x in xs], batch, width=0.4, label="batch")
    w2.bar([x + 0.2 for x in xs], per_request, width=0.4,
           label="one HTTP request per task (platform only)")  # fmt: skip
    w2.set_xticks(list(xs), names, rotation=30, ha="right", fontsize=8)
    w2.set_ylabel("tasks/s (median of rounds)")
    w2.set_title(f"W2 {report['settings']['w2']:,} no-op tasks: throughput")
    w2.set_ylim(0, max([*batch, *per_request, 1]) * 1.3)  # room for the legend
    w2.legend(fontsize=8, loc="upper right")
    fig.suptitle(f"{report['command']}  ({report['date']}, {report['machine']['cpus']} CPUs)",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


if __name__ == "__main__":
    for name in sys.argv[1:]:
        source = Path(name)
        side_by_side(json.loads(source.read_text()), source.with_suffix(".png"))
