"""`python -m examples.socialnetwork.load`: open-loop load on the social network.

Starts the app's store (seeded: Redis, or PostgreSQL and memcached with
--backend postgres), the platform, and deploys each variant (local, http, nested);
then for each:
  unloaded   closed loop, one request at a time: p50/p99 of each request type
             (and of the same calls made in this process, without the platform)
  rates      open loop at each --rates value: Poisson arrivals, each request's
             latency counted from its intended send time (so a stalled server
             is charged for the requests it delays, as wrk2 does), a warm-up then
             a measured window, HdrHistogram percentiles, offered vs achieved rate
  --sweep    rates from --sweep-start up by --sweep-step until p99 >= 100 ms:
             the saturation rate is the highest with p99 under 100 ms
Workloads: `mix` (DeathStar's: 60% read-home-timeline, 30% read-user-timeline,
10% compose-post) and `compose` (compose-post only). Requests go to the gateway's
POST /v1/tasks?wait= over keep-alive connections (bench/http.py); results as JSON
in bench/results/ (machine, date, command), plots as PNG with matplotlib.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import json
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
from hdrh.histogram import HdrHistogram

from bench.__main__ import machine
from bench.http import AsyncJSON, SyncJSON
from common.models import DispatchMode
from examples.socialnetwork import seed
from examples.socialnetwork.store import open_store
from examples.socialnetwork.wiring import VARIANTS, LocalApp, deploy, nested_unavailable
from faas.client import Client
from faas.platform import LocalPlatform, PlatformConfig, free_port

RESULTS_DIR = Path(__file__).resolve().parents[2] / "bench" / "results"
HOST = "127.0.0.1"
SLO_MS = 100.0
MIX = (("read_home_timeline", 0.6), ("read_user_timeline", 0.3), ("compose_post", 0.1))
_MAX_OUTSTANDING = 2000  # beyond this the server has long collapsed: stop offering
_ROOT_DEADLINE_S = 30.0

Request = tuple[str, tuple[Any, ...]]  # (service, args)


class Requests:
    """Random requests of a workload over the seeded users."""

    def __init__(self, users: int, rng: random.Random) -> None:
        self.users, self.rng = users, rng

    def make(self, service: str) -> Request:
        user = self.rng.randint(1, self.users)
        if service == "compose_post":
            text = seed.post_text(self.rng, self.users)
            return service, (f"load-{uuid.uuid4()}", user, text, [0], ["png"])
        return service, (user, 0, 10)

    def workload(self, name: str) -> Request:
        if name == "compose":
            return self.make("compose_post")
        services, weights = zip(*MIX, strict=True)
        return self.make(self.rng.choices(services, weights)[0])


def task_body(function_ids: dict[str, str], request: Request) -> dict[str, Any]:
    service, args = request
    payload = base64.b64encode(cloudpickle.dumps((args, {}))).decode()
    return {"function_id": function_ids[service], "payload": payload,
            "deadline_s": _ROOT_DEADLINE_S}  # fmt: skip


def histogram() -> HdrHistogram:
    return HdrHistogram(1, 120_000_000, 3)  # microseconds, 1 us to 2 min


def summary(hist: HdrHistogram) -> dict[str, float]:
    return {
        "n": hist.get_total_count(),
        **{
            f"p{label}_ms": round(hist.get_value_at_percentile(p) / 1000, 3)
            for label, p in (("50", 50), ("90", 90), ("99", 99), ("99.9", 99.9))
        },
        "max_ms": round(hist.get_max_value() / 1000, 3),
    }


def completed(status: int, view: Any) -> bool:
    return status == 201 and isinstance(view, dict) and view.get("status") == "COMPLETED"


# -- unloaded -----------------------------------------------------------------------------


def unloaded(
    port: int, ids: dict[str, str], requests: Requests, n: int, app_url: str
) -> dict[str, Any]:
    """One request at a time: through the platform, and the same calls in-process."""
    conn = SyncJSON(HOST, port)
    store = open_store(app_url)
    app = LocalApp(store)
    result: dict[str, Any] = {}
    for service, _ in MIX:
        platform_hist, inproc_hist = histogram(), histogram()
        for i in range(n + n // 10):  # the first tenth warms up
            request = requests.make(service)
            started = time.perf_counter()
            status, view = conn.request("POST", "/v1/tasks?wait=60", task_body(ids, request))
            took = time.perf_counter() - started
            if not completed(status, view):
                raise RuntimeError(f"{service} failed: {status} {view}")
            started = time.perf_counter()
            app.call(service, *request[1])
            took_inproc = time.perf_counter() - started
            if i >= n // 10:
                platform_hist.record_value(max(1, int(took * 1e6)))
                inproc_hist.record_value(max(1, int(took_inproc * 1e6)))
        result[service] = {"platform": summary(platform_hist), "in_process": summary(inproc_hist)}
    conn.close()
    store.close()
    return result


# -- open loop ----------------------------------------------------------------------------


async def open_loop(
    port: int, bodies: Callable[[], dict[str, Any]], rate: float, warmup_s: float,
    duration_s: float, rng: random.Random,
) -> dict[str, Any]:  # fmt: skip
    """Poisson arrivals at `rate`/s; latency from each request's intended send time."""
    loop = asyncio.get_running_loop()
    hist = histogram()
    idle: list[AsyncJSON] = []
    counts = {"offered": 0, "ok": 0, "failed": 0, "unsent": 0}
    last_done = 0.0
    failures: Counter[str] = Counter()  # HTTP status and error kind of failed requests

    async def one(intended: float, body: dict[str, Any], measured: bool) -> None:
        nonlocal last_done
        status, view = 0, None
        for reused in (bool(idle), False):  # a kept-alive connection the server closed: again
            conn = idle.pop() if reused else AsyncJSON(HOST, port)
            try:
                status, view = await conn.request("POST", "/v1/tasks?wait=60", body)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                await conn.close()
                continue
            idle.append(conn)
            break
        now = loop.time()
        if measured:
            if completed(status, view):
                counts["ok"] += 1
                hist.record_value(max(1, int((now - intended) * 1e6)))
                last_done = max(last_done, now)
            else:
                counts["failed"] += 1
                kind = (
                    view.get("error_kind") or view.get("status") if isinstance(view, dict) else None
                )
                failures[f"{status} {kind}"] += 1

    start = loop.time() + 0.2
    measured_from, end = start + warmup_s, start + warmup_s + duration_s
    intended, running = start, set()
    while intended < end:
        if (delay := intended - loop.time()) > 0:
            await asyncio.sleep(delay)
        measured = intended >= measured_from
        counts["offered"] += measured
        if len(running) < _MAX_OUTSTANDING:
            task = asyncio.create_task(one(intended, bodies(), measured))
            running.add(task)
            task.add_done_callback(running.discard)
        elif measured:
            counts["unsent"] += 1
        intended += rng.expovariate(rate)
    if running:
        await asyncio.wait(running, timeout=_ROOT_DEADLINE_S + 60)
    for conn in idle:
        await conn.close()
    window = max(duration_s, last_done - measured_from)
    lost = counts["offered"] - counts["ok"] - counts["failed"] - counts["unsent"]
    return {
        "offered_rps": rate,
        "achieved_rps": round(counts["ok"] / window, 1),
        **counts,
        "unfinished": lost,
        "failures": dict(failures),
        **summary(hist),
    }


def run_rate(port: int, ids: dict[str, str], requests: Requests, workload: str, rate: float,
             args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    settled_s = settle(port, ids, requests)
    count = int(rate * 2 * (args.warmup + args.duration)) + 100  # Poisson: ample
    it = iter([task_body(ids, requests.workload(workload)) for _ in range(count)])
    result = asyncio.run(
        open_loop(port, lambda: next(it), rate, args.warmup, args.duration, requests.rng)
    )
    r = result = {**result, "settle_s": settled_s}
    print(f"  {workload:8} {rate:6.0f}/s  achieved {r['achieved_rps']:7.1f}/s"
          f"  p50 {r['p50_ms']:8.1f}"
          f"  p99 {r['p99_ms']:8.1f}  p99.9 {r['p99.9_ms']:8.1f} ms  failed {r['failed']}"
          f"  unsent {r['unsent']}  unfinished {r['unfinished']}", flush=True)  # fmt: skip
    return result


def sweep(port: int, ids: dict[str, str], requests: Requests, workload: str,
          args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    """Raise the rate until p99 reaches the SLO (or the rate falls behind)."""
    points, rate, saturation = [], args.sweep_start, None
    while rate <= args.sweep_max:
        point = run_rate(port, ids, requests, workload, rate, args)
        points.append(point)
        ok = (
            point["p99_ms"] < SLO_MS
            and point["failed"] + point["unsent"] + point["unfinished"] == 0
            and point["achieved_rps"] >= 0.9 * rate
        )
        if not ok:
            break
        saturation = rate
        rate += args.sweep_step
    return {"points": points, "saturation_rps": saturation, "slo_p99_ms": SLO_MS}


# -- the run ------------------------------------------------------------------------------


def run_variant(
    variant: str, platform: LocalPlatform, app_url: str, args: argparse.Namespace
) -> dict[str, Any]:
    with Client(platform.url) as client:
        if variant in ("nested", "inline") and (reason := nested_unavailable(client)):
            print(f"{variant}: skipped: {reason}", flush=True)
            return {"skipped": reason}
        functions = deploy(client, variant, app_url)  # type: ignore[arg-type]
    ids = {name: fn.id for name, fn in functions.items()}
    requests = Requests(args.users, random.Random(args.seed))
    print(f"{variant}:", flush=True)
    result: dict[str, Any] = {
        "unloaded": unloaded(platform.config.port, ids, requests, args.unloaded_n, app_url)
    }
    for service, figures in result["unloaded"].items():
        print(f"  unloaded {service:20} p50 {figures['platform']['p50_ms']:7.2f} ms"
              f"  (in-process {figures['in_process']['p50_ms']:.2f} ms)", flush=True)  # fmt: skip
    for workload in args.workloads:  # the sweep first: a collapsed rate leaves a backlog
        result[workload] = {}
        if args.sweep:
            result[workload]["sweep"] = sweep(platform.config.port, ids, requests, workload, args)
        result[workload]["rates"] = [
            run_rate(platform.config.port, ids, requests, workload, rate, args)
            for rate in args.rates.get(workload, [])
        ]
    return result


def settle(port: int, ids: dict[str, str], requests: Requests, timeout_s: float = 300) -> float:
    """Wait until a request is answered within a second again (the backlog of an
    overloaded run drained); how long that took."""
    conn = SyncJSON(HOST, port)
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout_s:
            sent = time.monotonic()
            status, view = conn.request(
                "POST", "/v1/tasks?wait=60", task_body(ids, requests.make("read_user_timeline"))
            )
            if completed(status, view) and time.monotonic() - sent < 1.0:
                break
    finally:
        conn.close()
    return round(time.monotonic() - started, 1)


def plot(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    workloads = [w for w in ("mix", "compose") if any(w in r for r in results.values())]
    fig, axes = plt.subplots(1, len(workloads), figsize=(6 * len(workloads), 4.5), squeeze=False)
    for ax, workload in zip(axes[0], workloads, strict=True):
        for variant, result in results.items():
            if workload not in result:
                continue
            data = result[workload]
            points = data["rates"] + data.get("sweep", {}).get("points", [])
            points = sorted(points, key=lambda p: p["offered_rps"])
            if not points:
                continue
            rates = [p["offered_rps"] for p in points]
            for key, style in (("p50_ms", ":"), ("p99_ms", "-")):
                ax.plot(rates, [p[key] for p in points], style, marker="o",
                        label=f"{variant} {key[:-3]}")  # fmt: skip
        ax.axhline(SLO_MS, color="grey", linewidth=0.8)
        ax.set(title=workload, xlabel="offered rate (req/s)", ylabel="latency (ms)", yscale="log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def parse_rates(text: str) -> dict[str, list[float]]:
    """`mix=150,compose=50` or `150,200` (for every workload)."""
    rates: dict[str, list[float]] = {}
    for part in filter(None, text.split(";")):
        name, _, values = part.rpartition("=")
        for workload in [name] if name else ["mix", "compose"]:
            rates[workload] = [float(v) for v in values.split(",") if v]
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )  # fmt: skip
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--workloads", default="mix,compose")
    parser.add_argument("--rates", type=parse_rates, default=parse_rates("mix=150;compose=50"),
                        help="open-loop rates, e.g. 'mix=150;compose=50' (default)")  # fmt: skip
    parser.add_argument("--sweep", action="store_true", help="find the saturation rate")
    parser.add_argument("--sweep-start", type=float, default=25)
    parser.add_argument("--sweep-step", type=float, default=25)
    parser.add_argument("--sweep-max", type=float, default=1000)
    parser.add_argument("--warmup", type=float, default=5, help="seconds before measuring")
    parser.add_argument("--duration", type=float, default=20, help="measured seconds per rate")
    parser.add_argument("--unloaded-n", type=int, default=200)
    parser.add_argument("--backend", choices=seed.BACKENDS, default="redis",
                        help="the app's store: Redis, or PostgreSQL with memcached")  # fmt: skip
    parser.add_argument("--mode", default="local", choices=[m.value for m in DispatchMode])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--slots", type=int, default=32)
    parser.add_argument("--users", type=int, default=seed.USERS)
    parser.add_argument("--edges", type=int, default=seed.EDGES)
    parser.add_argument("--posts-per-user", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON path (default: bench/results/)"
    )
    args = parser.parse_args()
    args.workloads = [w for w in args.workloads.split(",") if w]
    started = datetime.datetime.now(datetime.UTC)
    with tempfile.TemporaryDirectory() as tmp, seed.throwaway_store(args.backend) as app_url:
        print(
            seed.seed(app_url, args.users, args.edges, args.posts_per_user, args.seed), flush=True
        )
        config = PlatformConfig(
            mode=DispatchMode(args.mode), port=free_port(), data_dir=Path(tmp) / "data",
            log_dir=Path(tmp) / "logs", workers=args.workers, slots=args.slots,
        )  # fmt: skip
        with LocalPlatform(config) as platform:
            results = {v: run_variant(v, platform, app_url, args) for v in args.variants.split(",")}
    stamp = started.strftime("%Y-%m-%dT%H%M%S")
    suffix = "" if args.backend == "redis" else f"-{args.backend}"
    out = args.out or RESULTS_DIR / f"{stamp}-socialnet{suffix}.json"
    report = {
        "date": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "command": "python -m examples.socialnetwork.load " + " ".join(sys.argv[1:]),
        "platform": {"mode": args.mode, "workers": args.workers, "slots": args.slots},
        "app": {
            "users": args.users,
            "edges": args.edges,
            "posts_per_user": args.posts_per_user,
            "backend": args.backend,
        },
        "results": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    if plot(results, out.with_suffix(".png")):
        print(f"wrote {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
