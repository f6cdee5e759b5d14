"""`python -m bench [--modes local,pull,push]`: start the platform, run the
workloads, print a summary and write JSON to bench/results/ (with machine and date).

W0  round trip of a bare FastAPI echo endpoint (the baseline), same client
W1  sequential submit-and-wait of a no-op: one synchronous request (POST /v1/tasks?wait),
    and the course way (POST /execute_function, then GET /result?wait)
W2  2,000 no-op tasks end to end: batch submit, and one HTTP request per task
W3  20 x sleep(0.5) on 4 slots: makespan
W4  echo of a 1 MB bytes argument: latency

--observability N runs only W1 (no-op, and a task printing one line) and W2, in N
rounds alternating between the platform with output capture and metrics on (the
default; dispatcher and worker also serve /metrics) and with both off, and reports
each variant's median over its rounds: the cost of capture and metrics.

`--security both` instead runs two platforms side by side, one with Redis users and
a CURVE worker link (as `faas up` runs) and one without, and alternates W1, W2
(batch) and W4 between them in interleaved rounds, so both see the same machine noise; it
reports the median of the rounds and the secure/insecure ratios.

`--environments N` runs N rounds of: the cold first call of a function with one new
requirement (installed from a local wheelhouse), then W1 alternating between it and the
same function with no environment; and the disk each environment uses (bench/environments.py).

`--baselines ray,celery` runs W1, W2 and W4 against Ray and Celery as well (as many CPUs or
worker processes as the platform has slots), `--baselines floor` W1 and W4 against this
design at its thinnest (bench/baselines/floor.py: a call's hops, nothing else), and
`--compare REF` against a git ref's checkout of the platform, all in the same interleaved
rounds; reports the ratios and draws a PNG (bench/sidebyside.py).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import json
import os
import platform as pyplatform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cloudpickle

from bench import workloads
from bench.environments import compare_environments
from bench.http import AsyncJSON, SyncJSON
from bench.proc import cpu_by_tree
from common.models import DispatchMode
from faas.client import pickle_function
from faas.platform import LocalPlatform, PlatformConfig, free_port

RESULTS_DIR = Path(__file__).parent / "results"
HOST = "127.0.0.1"


def b64(obj: object) -> str:
    return base64.b64encode(cloudpickle.dumps(obj)).decode()


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 3),
        "p90_ms": round(ms[int(len(ms) * 0.90) - 1], 3),
        "p99_ms": round(ms[int(len(ms) * 0.99) - 1], 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def timed(fn, n: int, warmup: int) -> list[float]:  # type: ignore[no-untyped-def]
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


# -- W0 ---------------------------------------------------------------------------------------


def echo_baseline(n: int) -> dict[str, float]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.echo_server", str(port)])
    try:
        client = _connect(port)
        body = {"function_id": "00000000-0000-4000-8000-000000000000", "payload": b64(((), {}))}
        result = percentiles(timed(lambda: client.request("POST", "/echo", body), n, 200))
        client.close()
        return result
    finally:
        server.terminate()
        server.wait()


def _connect(port: int) -> SyncJSON:
    deadline = time.monotonic() + 20
    while True:
        try:
            client = SyncJSON(HOST, port)
            client.request("GET", "/openapi.json")
            return client
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# -- the platform workloads -------------------------------------------------------------------


class Bench:
    def __init__(self, port: int) -> None:
        self.port = port
        self.http = SyncJSON(HOST, port)

    def register(self, fn: Any) -> str:
        payload = base64.b64encode(pickle_function(fn)).decode()
        status, body = self.http.request(
            "POST", "/register_function", {"name": fn.__name__, "payload": payload}
        )
        assert status == 201, body
        return body["function_id"]

    def wait_all(self, task_ids: list[str]) -> list[dict[str, Any]]:
        views: dict[str, dict[str, Any]] = {}
        pending = list(task_ids)
        while pending:
            for chunk in (pending[i : i + 1000] for i in range(0, len(pending), 1000)):
                status, body = self.http.request(
                    "POST", "/v1/tasks/wait", {"task_ids": chunk, "wait": 30}
                )
                assert status == 200, body
                for view in body["tasks"]:
                    if view["status"] in ("COMPLETED", "FAILED"):
                        views[view["task_id"]] = view
            pending = [t for t in pending if t not in views]
        return [views[t] for t in task_ids]

    def w1(self, n: int) -> dict[str, Any]:
        fid = self.register(workloads.noop)
        body = {"function_id": fid, "payload": b64(((), {}))}

        def sync_call() -> None:
            status, view = self.http.request("POST", "/v1/tasks?wait=30", body)
            assert status == 201 and view["status"] == "COMPLETED", view

        def course_call() -> None:
            _, created = self.http.request("POST", "/execute_function", body)
            _, view = self.http.request("GET", f"/result/{created['task_id']}?wait=30")
            assert view["status"] == "COMPLETED", view

        return {
            "one_request": percentiles(timed(sync_call, n, 100)),
            "execute_then_result": percentiles(timed(course_call, n // 2, 50)),
        }

    def w1_printing(self, n: int) -> dict[str, Any]:
        fid = self.register(workloads.chatty)
        body = {"function_id": fid, "payload": b64(((), {}))}

        def sync_call() -> None:
            status, view = self.http.request("POST", "/v1/tasks?wait=30", body)
            assert status == 201 and view["status"] == "COMPLETED", view

        return percentiles(timed(sync_call, n, 100))

    def w2_batch(self, n: int) -> dict[str, Any]:
        fid = self.register(workloads.identity)
        payloads = [b64(((i,), {})) for i in range(n)]
        t0 = time.perf_counter()
        task_ids: list[str] = []
        for start in range(0, n, 500):
            status, body = self.http.request(
                "POST",
                "/v1/tasks/batch",
                {"function_id": fid, "payloads": payloads[start : start + 500]},
            )
            assert status == 201, body
            task_ids += body["task_ids"]
        views = self.wait_all(task_ids)
        elapsed = time.perf_counter() - t0
        return {
            "tasks": n,
            "seconds": round(elapsed, 3),
            "tasks_per_s": round(n / elapsed),
            **_audit(views, n),
        }

    def w2_per_request(self, n: int, concurrency: int = 32) -> dict[str, Any]:
        fid = self.register(workloads.identity)
        payloads = [b64(((i,), {})) for i in range(n)]

        async def submit_all() -> list[str]:
            clients = [AsyncJSON(HOST, self.port) for _ in range(concurrency)]
            ids: list[str | None] = [None] * n

            async def run(k: int) -> None:
                for i in range(k, n, concurrency):
                    status, body = await clients[k].request(
                        "POST", "/execute_function", {"function_id": fid, "payload": payloads[i]}
                    )
                    assert status == 201, body
                    ids[i] = body["task_id"]

            await asyncio.gather(*(run(k) for k in range(concurrency)))
            for c in clients:
                await c.close()
            return [i for i in ids if i is not None]

        t0 = time.perf_counter()
        task_ids = asyncio.run(submit_all())
        submitted = time.perf_counter() - t0
        views = self.wait_all(task_ids)
        elapsed = time.perf_counter() - t0
        return {
            "tasks": n,
            "concurrency": concurrency,
            "submit_seconds": round(submitted, 3),
            "seconds": round(elapsed, 3),
            "tasks_per_s": round(n / elapsed),
            **_audit(views, n),
        }

    def w3(self, count: int = 20, seconds: float = 0.5) -> dict[str, Any]:
        fid = self.register(workloads.nap)
        t0 = time.perf_counter()
        _, body = self.http.request(
            "POST",
            "/v1/tasks/batch",
            {"function_id": fid, "payloads": [b64(((seconds,), {}))] * count},
        )
        views = self.wait_all(body["task_ids"])
        makespan = time.perf_counter() - t0
        assert all(v["status"] == "COMPLETED" for v in views)
        return {"tasks": count, "sleep_s": seconds, "makespan_s": round(makespan, 3)}

    def w4(self, n: int = 30) -> dict[str, Any]:
        fid = self.register(workloads.echo)
        blob = os.urandom(2**20)
        body = {"function_id": fid, "payload": b64(((blob,), {}))}
        views: list[dict[str, Any]] = []

        def call() -> None:
            status, view = self.http.request("POST", "/v1/tasks?wait=30", body)
            assert status == 201 and view["status"] == "COMPLETED", view
            views.append(view)

        result = percentiles(timed(call, n, 3))
        assert cloudpickle.loads(base64.b64decode(views[-1]["result"])) == blob
        return {"bytes": len(blob), **result}


def _audit(views: list[dict[str, Any]], n: int) -> dict[str, int]:
    values = [
        cloudpickle.loads(base64.b64decode(v["result"]))
        for v in views
        if v["status"] == "COMPLETED"
    ]
    return {
        "lost": n - len(set(values) & set(range(n))),
        "duplicated_results": len(values) - len(set(values)),
        "retried": sum(1 for v in views if v["attempt"] > 1),
    }


def run_mode(mode: DispatchMode, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    config = PlatformConfig(
        mode=mode, workers=args.workers, slots=args.slots, port=free_port(),
        data_dir=log_dir / f"data-{mode.value}", log_dir=log_dir / mode.value,
        gateway_workers=args.gateway_workers,
    )  # fmt: skip
    with LocalPlatform(config) as p:
        bench = Bench(config.port)
        print(f"[{mode}] W1 ...", flush=True)
        results: dict[str, Any] = {"W1_submit_and_wait": bench.w1(args.w1)}
        print(f"[{mode}] W2 ...", flush=True)
        results["W2_batch"] = bench.w2_batch(args.w2)
        results["W2_per_request"] = bench.w2_per_request(args.w2)
        print(f"[{mode}] W3, W4 ...", flush=True)
        results["W3_sleep_makespan"] = bench.w3()
        results["W4_echo_1MB"] = bench.w4()
        bench.http.close()
        del p
    return results


def platform_cpu_s(platform: LocalPlatform) -> float:
    """CPU seconds (user + system) used so far by the platform's processes and their
    descendants (local worker, fork server, slots): less disturbed by other load on a
    shared machine than wall-clock figures."""
    procs = [platform.gateway, *platform.dispatchers, *platform.workers]
    roots = {str(p.popen.pid): p.popen.pid for p in procs if p is not None and p.popen}
    return sum(cpu_by_tree(roots).values())


OBSERVABILITY_OFF = {"FAAS_CAPTURE_OUTPUT": "false", "FAAS_METRICS_ENABLED": "false"}


def observability_round(
    on: bool, mode: DispatchMode, args: argparse.Namespace, log_dir: Path, round_: int
) -> dict[str, float]:
    name = f"{mode.value}-{'on' if on else 'off'}-{round_}"
    config = PlatformConfig(
        mode=mode, workers=args.workers, slots=args.slots, port=free_port(),
        data_dir=log_dir / f"data-{name}", log_dir=log_dir / name,
        gateway_workers=args.gateway_workers, metrics=on,
        env={} if on else OBSERVABILITY_OFF,
    )  # fmt: skip
    with LocalPlatform(config) as platform:
        bench = Bench(config.port)
        cpu_before = platform_cpu_s(platform)
        w1 = bench.w1(args.w1)["one_request"]
        # W1 makes n one-request calls plus 100 warm-up, then n/2 + 50 course-way calls
        cpu_w1 = (platform_cpu_s(platform) - cpu_before) / (args.w1 * 1.5 + 150)
        printing = bench.w1_printing(args.w1)
        cpu_before = platform_cpu_s(platform)
        w2 = bench.w2_batch(args.w2)
        cpu_w2 = platform_cpu_s(platform) - cpu_before
        w2r = bench.w2_per_request(args.w2)
        bench.http.close()
    return {
        "W1_p50_ms": w1["p50_ms"],
        "W1_p99_ms": w1["p99_ms"],
        "W1_printing_p50_ms": printing["p50_ms"],
        "W2_batch_tasks_per_s": w2["tasks_per_s"],
        "W2_per_request_tasks_per_s": w2r["tasks_per_s"],
        "W1_platform_cpu_us_per_call": round(cpu_w1 * 1e6, 1),
        "W2_batch_platform_cpu_us_per_task": round(cpu_w2 / args.w2 * 1e6, 1),
    }


def compare_observability(mode: DispatchMode, args: argparse.Namespace, log_dir: Path) -> dict:
    rounds: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    for i in range(args.observability):
        for on in (True, False) if i % 2 == 0 else (False, True):  # interleaved, ABBA
            print(f"[{mode}] round {i + 1}, capture and metrics {'on' if on else 'off'} ...",
                  flush=True)  # fmt: skip
            rounds["on" if on else "off"].append(observability_round(on, mode, args, log_dir, i))
    medians = {
        variant: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for variant, runs in rounds.items()
    }
    change = {k: f"{(medians['on'][k] / medians['off'][k] - 1) * 100:+.1f}%" for k in medians["on"]}
    return {"rounds": rounds, "median": medians, "on_vs_off": change}


def run_security(mode: DispatchMode, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    """W1 p50, W2 tasks/s and W4 p50 with security on and off, alternating in each round."""
    platforms: dict[str, LocalPlatform] = {}
    rounds: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    try:
        for side in ("on", "off"):
            config = PlatformConfig(
                mode=mode, workers=args.workers, slots=args.slots, port=free_port(),
                data_dir=log_dir / f"data-{side}", log_dir=log_dir / f"{mode.value}-{side}",
                gateway_workers=args.gateway_workers, secure=side == "on",
            )  # fmt: skip
            platforms[side] = LocalPlatform(config).start()
        benches = {side: Bench(p.config.port) for side, p in platforms.items()}
        for bench in benches.values():  # warm both (registrations, slots, caches)
            bench.w1(200)
        for r in range(args.rounds):
            for side in ("on", "off") if r % 2 == 0 else ("off", "on"):
                bench = benches[side]
                w1 = bench.w1(args.w1)["one_request"]["p50_ms"]
                w2 = bench.w2_batch(args.w2)
                assert w2["lost"] == 0, w2
                w4 = bench.w4(args.w4)["p50_ms"]
                rounds[side].append(
                    {"W1_p50_ms": w1, "W2_tasks_per_s": w2["tasks_per_s"], "W4_p50_ms": w4}
                )
                print(f"[{mode}] round {r + 1} security {side}: W1 p50 {w1} ms, "
                      f"W2 {w2['tasks_per_s']} tasks/s, W4 p50 {w4} ms", flush=True)  # fmt: skip
        for bench in benches.values():
            bench.http.close()
    finally:
        for p in platforms.values():
            p.stop()
    medians = {
        side: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
        for side, rs in rounds.items()
    }
    return {
        "rounds": rounds,
        "median": medians,
        "W1_p50_on_over_off": round(medians["on"]["W1_p50_ms"] / medians["off"]["W1_p50_ms"], 3),
        "W2_tasks_per_s_on_over_off": round(
            medians["on"]["W2_tasks_per_s"] / medians["off"]["W2_tasks_per_s"], 3
        ),
        "W4_p50_on_over_off": round(medians["on"]["W4_p50_ms"] / medians["off"]["W4_p50_ms"], 3),
    }


def machine() -> dict[str, Any]:
    return {
        "host": pyplatform.node(),
        "cpus": os.cpu_count(),
        "platform": pyplatform.platform(),
        "python": pyplatform.python_version(),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--modes", default="local", help="comma-separated: local,pull,push")
    parser.add_argument("--slots", type=int, default=4, help="slots (local) or per worker")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (pull/push)")
    parser.add_argument("--gateway-workers", type=int, default=1)
    parser.add_argument("--w1", type=int, default=1000, help="W1 sequential calls")
    parser.add_argument("--w2", type=int, default=2000, help="W2 tasks")
    parser.add_argument(
        "--security",
        choices=["on", "both"],
        default="on",
        help="both: Redis users and CURVE on vs off, side by side (W1 and W2 only)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="interleaved rounds (--security both, --baselines, --compare)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--observability",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="only compare capture and metrics on/off, in ROUNDS rounds each",
    )
    parser.add_argument(
        "--environments",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="only measure functions' environments: cold first call, W1 with vs without",
    )
    parser.add_argument(
        "--baselines",
        metavar="NAMES",
        help="also run ray, celery and/or floor (comma-separated) in the same interleaved"
        " rounds: W1, W2, W4 and the ratios ours/theirs (ray and celery need the bench extra;"
        " floor is this design at its thinnest)",
    )
    parser.add_argument(
        "--compare",
        metavar="REF",
        help="also run a git ref's checkout of the platform in the same interleaved rounds:"
        " W1, W2, W4 and the ratios this/REF",
    )
    parser.add_argument("--w4", type=int, default=30, help="W4 calls (--baselines, --compare)")
    parser.add_argument(
        "--ports",
        metavar="LOW-HIGH",
        help="take every port of what the bench starts from this range (default: any free)",
    )
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()  # fmt: skip
    modes = [DispatchMode(m) for m in args.modes.split(",")]
    stamp = datetime.datetime.now(datetime.UTC)
    if args.baselines or args.compare:
        side_by_side(args, [m.value for m in modes], stamp)
        return
    scratch = tempfile.TemporaryDirectory(prefix="faas-bench-")  # Redis data and logs
    log_dir = Path(scratch.name)
    if args.environments:
        report = {
            "date": stamp.isoformat(timespec="seconds"),
            "machine": machine(),
            "command": "python -m bench " + " ".join(sys.argv[1:]),
            "settings": {"slots": args.slots, "workers": args.workers, "w1": args.w1},
            "environments": {m.value: compare_environments(m, args, log_dir) for m in modes},
        }
        _write(report, args.out / f"{stamp:%Y-%m-%dT%H%M%S}-environments.json")
        scratch.cleanup()
        return
    if args.observability or args.security == "both":
        report = {
            "date": stamp.isoformat(timespec="seconds"),
            "machine": machine(),
            "command": "python -m bench " + " ".join(sys.argv[1:]),
            **(
                {"observability": {m.value: compare_observability(m, args, log_dir) for m in modes}}
                if args.observability
                else {
                    "settings": {"slots": args.slots, "workers": args.workers,
                                 "rounds": args.rounds, "w1": args.w1, "w2": args.w2},
                    "security_overhead": {m.value: run_security(m, args, log_dir) for m in modes},
                }
            ),
        }  # fmt: skip
        names = "-".join(m.value for m in modes)
        what = "observability" if args.observability else f"security-{names}"
        _write(report, args.out / f"{stamp:%Y-%m-%dT%H%M%S}-{what}.json")
        scratch.cleanup()
        return
    print("W0 echo baseline ...", flush=True)
    report: dict[str, Any] = {
        "date": stamp.isoformat(timespec="seconds"),
        "machine": machine(),
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "settings": {
            "slots": args.slots,
            "workers": args.workers,
            "gateway_workers": args.gateway_workers,
        },
        "W0_echo_baseline": echo_baseline(args.w1),
        "modes": {},
    }
    for mode in modes:
        report["modes"][mode.value] = run_mode(mode, args, log_dir)
    base = report["W0_echo_baseline"]["p50_ms"]
    for results in report["modes"].values():
        results["W1_ratio_to_echo_p50"] = round(
            results["W1_submit_and_wait"]["one_request"]["p50_ms"] / base, 2
        )
    _write(report, args.out / f"{stamp:%Y-%m-%dT%H%M%S}-{'-'.join(m.value for m in modes)}.json")
    scratch.cleanup()


def side_by_side(args: argparse.Namespace, modes: list[str], stamp: datetime.datetime) -> None:
    """--baselines, --compare: bench/sidebyside.py."""
    from bench import baselines, plots, sidebyside  # Ray and Celery load only for this

    try:
        names = baselines.parse(args.baselines or "")
    except ValueError as exc:
        raise SystemExit(f"--baselines: {exc}") from None
    report = {
        "date": stamp.isoformat(timespec="seconds"),
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        **sidebyside.run(args, modes),
    }
    stem = sidebyside.file_stem(modes, names, args.compare)
    path = args.out / f"{stamp:%Y-%m-%dT%H%M%S}-{stem}.json"
    summary = {k: v for k, v in report.items() if k not in ("rounds", "w2_detail", "samples_ms")}
    print(json.dumps(summary, indent=2))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"written to {path}")
    if plots.side_by_side(report, path.with_suffix(".png")) is not None:
        print(f"plot in {path.with_suffix('.png')}")


def _write(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
