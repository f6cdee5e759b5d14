"""`python -m bench.scaling`: weak scaling and recovery time of remote workers.

Weak scaling: 1, 2, 4, 8 workers of 4 slots each run I/O-bound tasks (sleep 50 ms),
25 per slot; efficiency = measured throughput / (slots / 0.05 s). Latency
percentiles are per task, from queued to finished.

Recovery: a worker running a task is killed with SIGKILL (its whole process group,
as a pod dies); measured from the kill to the task starting again elsewhere, by
heartbeat alone and with the lost-worker report the Kubernetes controller sends.

Writes JSON (and a PNG if matplotlib is installed) to bench/results/.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import workloads
from bench.__main__ import RESULTS_DIR, Bench, b64, machine
from common.models import DispatchMode
from faas.client import pickle_function
from faas.platform import LocalPlatform, PlatformConfig, free_port

SLOTS = 4
SLEEP_S = 0.05


def weak_scaling(mode: DispatchMode, workers: int, per_slot: int, tmp: Path) -> dict[str, Any]:
    config = PlatformConfig(
        mode=mode, workers=workers, slots=SLOTS, port=free_port(),
        data_dir=tmp / f"data-{workers}", log_dir=tmp / f"logs-{workers}",
    )  # fmt: skip
    with LocalPlatform(config):
        bench = Bench(config.port)
        fid = bench.register(workloads.nap)
        bench.w3(count=workers * SLOTS, seconds=SLEEP_S)  # warm every slot
        count = workers * SLOTS * per_slot
        payload = b64(((SLEEP_S,), {}))
        t0 = time.perf_counter()
        task_ids: list[str] = []
        for start in range(0, count, 1000):
            n = min(1000, count - start)
            _, body = bench.http.request(
                "POST", "/v1/tasks/batch", {"function_id": fid, "payloads": [payload] * n}
            )
            task_ids += body["task_ids"]
        views = bench.wait_all(task_ids)
        elapsed = time.perf_counter() - t0
        bench.http.close()
    assert all(v["status"] == "COMPLETED" for v in views)
    latencies = sorted((v["finished_at_ms"] - v["queued_at_ms"]) for v in views)
    ideal = workers * SLOTS / SLEEP_S
    return {
        "workers": workers,
        "slots": workers * SLOTS,
        "tasks": count,
        "seconds": round(elapsed, 3),
        "tasks_per_s": round(count / elapsed, 1),
        "ideal_tasks_per_s": ideal,
        "efficiency": round(count / elapsed / ideal, 3),
        "latency_p50_ms": latencies[len(latencies) // 2],
        "latency_p99_ms": latencies[int(len(latencies) * 0.99) - 1],
    }


def recovery(mode: DispatchMode, tmp: Path, *, report: bool, trials: int) -> dict[str, Any]:
    config = PlatformConfig(
        mode=mode, workers=trials + 1, slots=1, port=free_port(),
        data_dir=tmp / f"data-rec-{report}", log_dir=tmp / f"logs-rec-{report}",
    )  # fmt: skip
    samples = []
    with LocalPlatform(config) as platform:
        bench = Bench(config.port)
        payload = base64.b64encode(pickle_function(workloads.nap)).decode()
        _, body = bench.http.request(
            "POST", "/register_function", {"name": "nap", "payload": payload}
        )
        fid = body["function_id"]
        for _ in range(trials):
            _, created = bench.http.request(
                "POST", "/execute_function", {"function_id": fid, "payload": b64(((2,), {}))}
            )
            task_id = created["task_id"]
            view = _until(bench, task_id, lambda v: v["status"] == "RUNNING" and v["worker_id"])
            victim = platform.worker_ids[view["worker_id"]]
            killed_ms = time.time() * 1000
            victim.kill()
            if report:
                platform.report_lost_worker(view["worker_id"])
            again = _until(bench, task_id, lambda v: v["attempt"] == 2 and v["status"] == "RUNNING")
            samples.append((again["started_at_ms"] - killed_ms) / 1000)
            _until(bench, task_id, lambda v: v["status"] == "COMPLETED")  # frees its slot
        bench.http.close()
    return {
        "mode": mode.value,
        "with_lost_worker_report": report,
        "trials": trials,
        "recovery_s_p50": round(statistics.median(samples), 3),
        "recovery_s_max": round(max(samples), 3),
    }


def _until(bench: Bench, task_id: str, predicate, timeout_s: float = 30) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _, view = bench.http.request("GET", f"/v1/tasks/{task_id}")
        if predicate(view):
            return view
        time.sleep(0.005)
    raise TimeoutError(task_id)


def plot(report: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for mode, rows in report["weak_scaling"].items():
        workers = [r["workers"] for r in rows]
        left.plot(workers, [r["tasks_per_s"] for r in rows], "o-", label=f"{mode} measured")
        right.plot(workers, [r["latency_p50_ms"] for r in rows], "o-", label=f"{mode} p50")
        right.plot(workers, [r["latency_p99_ms"] for r in rows], "s--", label=f"{mode} p99")
    first = next(iter(report["weak_scaling"].values()))
    left.plot(
        [r["workers"] for r in first], [r["ideal_tasks_per_s"] for r in first], "k:", label="ideal"
    )
    left.set(
        xlabel="workers (4 slots each)", ylabel="tasks/s", title="Weak scaling, sleep(50 ms) tasks"
    )
    right.set(
        xlabel="workers (4 slots each)", ylabel="queued -> finished (ms)", title="Task latency"
    )
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 2, 4, 8], labels=["1", "2", "4", "8"])
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{report['machine']['cpus']} cores, {report['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scaling",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--modes", default="pull,push")
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--per-slot", type=int, default=25, help="tasks per slot")
    parser.add_argument("--trials", type=int, default=5, help="recovery measurements")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()  # fmt: skip
    stamp = datetime.datetime.now(datetime.UTC)
    scratch = tempfile.TemporaryDirectory(prefix="faas-scaling-")  # Redis data and logs
    tmp = Path(scratch.name)
    modes = [DispatchMode(m) for m in args.modes.split(",")]
    report: dict[str, Any] = {
        "date": stamp.isoformat(timespec="seconds"),
        "machine": machine(),
        "command": "python -m bench.scaling "
        + " ".join(f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k != "out"),
        "weak_scaling": {},
        "recovery": [],
    }
    for mode in modes:
        rows = []
        for workers in (int(w) for w in args.workers.split(",")):
            print(f"[{mode}] weak scaling, {workers} workers ...", flush=True)
            rows.append(weak_scaling(mode, workers, args.per_slot, tmp / mode.value))
        report["weak_scaling"][mode.value] = rows
        for with_report in (False, True):
            print(f"[{mode}] recovery, report={with_report} ...", flush=True)
            report["recovery"].append(
                recovery(mode, tmp / mode.value, report=with_report, trials=args.trials)
            )
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{stamp:%Y-%m-%dT%H%M%S}-scaling"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    if plot(report, stem.with_suffix(".png")):
        print(f"plot: {stem.with_suffix('.png')}")
    print(f"written to {stem.with_suffix('.json')}")
    scratch.cleanup()


if __name__ == "__main__":
    main()
