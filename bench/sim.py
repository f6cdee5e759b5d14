"""`python -m bench.sim`: the dispatcher alone, against simulated workers.

A real redis-server and a real dispatcher process (pull or push mode, CURVE on the
worker link) serve N simulated workers of S slots each. They run in a few asyncio
processes and speak the real wire protocol (HELLO, READY, TASK, RESULT with seq,
HEARTBEAT, BATCH of the TASKs or RESULTs of one turn, and with `--prefetch N` or
`--prefetch slots` STARTED for the tasks they held beyond their slots) but "run" a
task by waiting out its duration on a timer, so what is measured is the dispatcher
and the store, not the slots. The queue is filled before the workers connect, so the
dispatcher is never starved.

Reported per shape (workers x slots): tasks/s over the measured window, efficiency =
tasks/s / (slots / task duration), and dispatch latency (a slot freed to its next task
started: the dispatcher's round trip for a freed slot, or about 0 when the worker
had one prefetched). `--task-ms 0` with
many slots gives the dispatcher's ceiling. `--compare REF` runs the same shapes,
interleaved, against the dispatcher package of a git ref (checked out with `git
worktree add` in a temporary directory) and reports the ratios.

Writes JSON (and a PNG if matplotlib is installed) to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import cloudpickle

from bench.__main__ import RESULTS_DIR, machine
from bench.checkout import ROOT, checkout
from common import wire
from common.models import DispatchMode
from faas.platform import LocalPlatform, PlatformConfig

RESULT_BLOB = cloudpickle.dumps(("ok", 42))


# -- the simulated workers (run in child processes: `python -m bench.sim --serve ...`) ----


async def _sim_worker(
    worker_id: str, slots: int, args: argparse.Namespace, stop_at: float, stats: dict
) -> None:
    import zmq
    import zmq.asyncio

    from common import curve

    ctx = zmq.asyncio.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IDENTITY, worker_id.encode())
    curve.connect_securely(sock, os.environ["FAAS_WORKER_SECRET_KEY"],
                           os.environ["FAAS_DISPATCHER_PUBLIC_KEY"])  # fmt: skip
    sock.connect(args.endpoint)
    seq = 1
    freed: list[float] = []  # when each free slot became free, oldest first
    running: dict[str, asyncio.TimerHandle] = {}  # by task id, until it "ends"
    waiting: list[dict] = []  # prefetched TASK headers, oldest first

    results: list[tuple[dict, list[bytes]]] = []  # this loop turn's, sent at its end
    batches = False  # the dispatcher takes RESULTs in a BATCH (its WELCOME says)

    def send(command: wire.Command, header: dict | None = None, *blobs: bytes) -> None:
        sock.send_multipart(wire.pack(command, header, *blobs), copy=False)

    def send_results() -> None:
        if sock.closed:  # the run ended before this turn's end
            return
        if batches:
            sock.send_multipart(wire.pack_batch(wire.Command.RESULT, results), copy=False)
        else:
            for header, blobs in results:
                send(wire.Command.RESULT, header, *blobs)
        results.clear()

    hello = {"worker_id": worker_id, "slots": slots, "running": [], "seq": 1,
             "prefetch": args.prefetch, "batches": True}  # fmt: skip
    send(wire.Command.HELLO, hello)
    if args.mode == "pull":
        send(wire.Command.READY, {"credits": slots + args.prefetch})

    def start(header: dict) -> None:
        now = time.time()
        became_free = freed.pop(0)
        if stats["window"][0] <= now < stats["window"][1] and became_free > started:
            stats["latency"].append(now - became_free)
        # A timer, not a task per simulated task: the simulation's own CPU is taken
        # from the dispatcher it measures.
        loop = asyncio.get_running_loop()
        running[header["task_id"]] = loop.call_later(args.task_ms / 1000, end, header)

    def end(header: dict) -> None:
        nonlocal seq
        running.pop(header["task_id"], None)
        result = {"task_id": header["task_id"], "attempt": header["attempt"],
                  "outcome": "ok", "error": "", "seq": seq}  # fmt: skip
        seq += 1
        now = time.time()
        freed.append(now)
        if stats["window"][0] <= now < stats["window"][1]:
            stats["done"] += 1
        if waiting:  # the freed slot takes the next one; the RESULT says so (as workers do)
            held = waiting.pop(0)
            start(held)
            if held.get("prefetched"):
                result["started"] = [[held["task_id"], held["attempt"]]]
        if not results:  # as a worker does: what ends in one turn goes in one message
            asyncio.get_running_loop().call_soon(send_results)
        results.append((result, [RESULT_BLOB]))

    async def beat() -> None:
        while True:
            await asyncio.sleep(1.0)
            send(wire.Command.HEARTBEAT)

    beating = asyncio.create_task(beat())
    started = time.time()
    freed.extend([started] * slots)
    while time.time() < stop_at:
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 that wraps each receive in a
            # task of its own, CPU the simulation takes from the dispatcher it measures.
            async with asyncio.timeout(max(0.01, stop_at - time.time())):
                frames = await sock.recv_multipart()
        except TimeoutError:
            break
        for msg in wire.unpack(frames).messages():
            if msg.command == wire.Command.WELCOME:
                batches = msg.header.get("batches", False)
            if msg.command != wire.Command.TASK:
                continue
            if not freed:  # every slot is taken: hold it until one frees
                waiting.append(msg.header)
                continue
            start(msg.header)
            if msg.header.get("prefetched"):  # its RESULT freed the slot in between
                send(
                    wire.Command.STARTED,
                    {"tasks": [[msg.header["task_id"], msg.header["attempt"]]]},
                )
    beating.cancel()
    for timer in running.values():
        timer.cancel()
    with contextlib.suppress(Exception):
        send(wire.Command.BYE)
    sock.close(linger=100)


async def _serve(args: argparse.Namespace) -> None:
    stop_at = args.start_at + args.warmup_s + args.duration_s
    window = (args.start_at + args.warmup_s, stop_at)
    stats: dict[str, Any] = {"done": 0, "latency": [], "window": window}
    workers = [f"sim-{args.group}-{i}" for i in range(args.workers)]
    await asyncio.gather(*(_sim_worker(w, args.slots, args, stop_at, stats) for w in workers))
    lat = stats["latency"]
    if len(lat) > 20000:  # keep the output small; a uniform sample keeps the percentiles
        lat = lat[:: len(lat) // 20000 + 1]
    json.dump({"done": stats["done"], "latency": lat}, sys.stdout)


# -- one run: redis + dispatcher + simulated workers --------------------------------------


def _submit(redis_url: str, prefix: str, count: int) -> None:
    from common.store import Store

    async def fill() -> None:
        store = Store.from_url(redis_url, prefix=prefix)
        function_id = "sim"
        await store.register_function(function_id, "sim", cloudpickle.dumps(len))
        args = cloudpickle.dumps(((), {}))
        for start in range(0, count, 1000):
            batch = [(uuid.uuid4().hex, args) for _ in range(min(1000, count - start))]
            await store.submit(
                function_id, batch, deadline_s=600, max_attempts=3, max_unfinished=2**62
            )  # more than a tenant's default quota
        await store.close()

    asyncio.run(fill())


def run_shape(
    workers: int, slots: int, args: argparse.Namespace, source: Path, tmp: Path
) -> dict[str, Any]:
    mode = DispatchMode(args.mode)
    total_slots = workers * slots
    task_s = args.task_ms / 1000
    # Enough queued work for the whole run at full efficiency (or the ceiling).
    rate = total_slots / task_s if task_s else args.ceiling_rate
    count = min(int(rate * (args.warmup_s + args.duration_s) * 1.2) + total_slots, args.max_tasks)
    name = f"{source.name}-{workers}x{slots}-{time.monotonic_ns()}"
    config = PlatformConfig(mode=mode, workers=0, slots=slots, data_dir=tmp / name,
                            log_dir=tmp / name / "logs")  # fmt: skip
    platform = LocalPlatform(config)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        platform.start_redis()
        _submit(platform.redis_url, config.key_prefix, count)
        env = platform._env("dispatcher", platform._dispatcher_keys)
        env["FAAS_BIND_HOST"] = "127.0.0.1"
        port = platform.dispatcher_port
        (tmp / name).mkdir(parents=True, exist_ok=True)
        log = open(tmp / name / "dispatcher.log", "wb")  # noqa: SIM115
        dispatcher = subprocess.Popen(
            [sys.executable, "-m", "dispatcher", "-m", mode.value, "-p", str(port)],
            cwd=source, env={**env, "PYTHONPATH": str(source)},
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        procs.append(dispatcher)
        groups = max(1, min(args.sim_procs, workers))
        worker_env = {**os.environ, **platform._worker_keys, "PYTHONPATH": str(ROOT)}
        sims = []
        for g in range(groups):
            n = workers // groups + (1 if g < workers % groups else 0)
            argv = [sys.executable, "-m", "bench.sim", "--serve", "--group", str(g),
                    "--workers", str(n), "--slots", str(slots), "--mode", mode.value,
                    "--task-ms", str(args.task_ms), "--endpoint", f"tcp://127.0.0.1:{port}",
                    "--prefetch", str(args.prefetch),
                    "--warmup-s", str(args.warmup_s),
                    "--duration-s", str(args.duration_s)]  # fmt: skip
            sims.append(subprocess.Popen(argv, cwd=ROOT, env=worker_env, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE))  # fmt: skip
        procs += sims
        for sim in sims:
            assert sim.stdout is not None and sim.stdout.readline().strip() == b"ready"
        start_at = time.time() + 0.2
        for sim in sims:
            assert sim.stdin is not None
            sim.stdin.write(f"{start_at}\n".encode())
            sim.stdin.flush()
        # The dispatcher's CPU time over the measured window: per task, it does not
        # depend on how the noisy machine shares its cores, unlike tasks/s.
        time.sleep(max(0.0, start_at + args.warmup_s - time.time()))
        # The simulated workers' too: on two cores they share the CPU with the
        # dispatcher, so a shape whose simulation costs more leaves it less.
        sim_pids = [sim.pid for sim in sims]
        cpu_before = _cpu_s(dispatcher.pid)
        io_cpu_before = _io_threads_cpu_s(dispatcher.pid)
        sim_cpu_before = sum(map(_cpu_s, sim_pids))
        time.sleep(max(0.0, start_at + args.warmup_s + args.duration_s - time.time()))
        cpu_s = _cpu_s(dispatcher.pid) - cpu_before
        io_cpu_s = _io_threads_cpu_s(dispatcher.pid) - io_cpu_before
        sim_cpu_s = sum(map(_cpu_s, sim_pids)) - sim_cpu_before
        done, latency = 0, []
        for sim in sims:
            out, _ = sim.communicate(timeout=args.warmup_s + args.duration_s + 60)
            report = json.loads(out)
            done += report["done"]
            latency += report["latency"]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        platform.stop()
        if os.environ.get("FAAS_SIM_KEEP_LOGS"):
            print((tmp / name / "dispatcher.log").read_text()[:4000], file=sys.stderr)
    throughput = done / args.duration_s
    ideal = total_slots / task_s if task_s else None
    return {
        "shape": f"{workers}x{slots}",
        "workers": workers,
        "slots_per_worker": slots,
        "slots": total_slots,
        "queued": count,
        "tasks_per_s": round(throughput, 1),
        "efficiency": round(throughput / ideal, 4) if ideal else None,
        "dispatcher_cpu_ms_per_task": round(1000 * cpu_s / done, 4) if done else None,
        # Of the dispatcher's: its ZeroMQ I/O thread (socket reads and writes, CURVE),
        # which costs more per message over many connections than over a few.
        "dispatcher_io_thread_cpu_ms_per_task": round(1000 * io_cpu_s / done, 4) if done else None,
        "simulation_cpu_ms_per_task": round(1000 * sim_cpu_s / done, 4) if done else None,
        "dispatch_latency": _percentiles(latency),
    }


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _io_threads_cpu_s(pid: int) -> float:
    """CPU seconds of process `pid`'s ZeroMQ I/O threads so far."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            if (task / "comm").read_text().startswith("ZMQbg/IO"):
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _percentiles(samples_s: list[float]) -> dict[str, float] | None:
    if len(samples_s) < 2:
        return None
    ms = sorted(s * 1000 for s in samples_s)
    pick = lambda q: round(ms[min(len(ms) - 1, math.floor(q * len(ms)))], 3)  # noqa: E731
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 3), "p90_ms": pick(0.9),
            "p99_ms": pick(0.99), "max_ms": round(ms[-1], 3)}  # fmt: skip


# -- the benchmark --------------------------------------------------------------------------


def _shapes(text: str) -> list[tuple[int, int]]:
    shapes = []
    for part in text.split(","):
        workers, _, slots = part.strip().partition("x")
        shapes.append((int(workers), int(slots)))
    return shapes


def _plot(results: dict[str, list[dict]], path: Path, task_ms: float) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, rows in results.items():
        rows = sorted((r for r in rows if r["efficiency"] is not None), key=lambda r: r["slots"])
        ax.plot([r["slots"] for r in rows], [r["efficiency"] for r in rows], "o-", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("slots (workers x slots each)")
    ax.set_ylabel("efficiency")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"dispatcher with simulated workers, {task_ms:g} ms tasks")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sim", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--shapes", default="4x4,16x4,64x4,256x4,4x256",
                        help="workers x slots each, comma-separated")  # fmt: skip
    parser.add_argument("--task-ms", type=float, default=100, help="each task's duration")
    parser.add_argument("--duration-s", type=float, default=10, help="measured window")
    parser.add_argument("--warmup-s", type=float, default=3, help="before the window")
    parser.add_argument("--mode", choices=["pull", "push"], default="pull")
    parser.add_argument("--prefetch", default="0",
                        help="tasks each simulated worker holds beyond its slots, or "
                        "'slots' for as many as its slots (a real worker's default); "
                        "comma-separated values run side by side")  # fmt: skip
    parser.add_argument("--ceiling", default="16x64",
                        help="shape for the 0 ms ceiling run ('' to skip)")  # fmt: skip
    parser.add_argument("--ceiling-rate", type=float, default=8000,
                        help="tasks/s to queue for when tasks take 0 ms")  # fmt: skip
    parser.add_argument("--max-tasks", type=int, default=200_000)
    parser.add_argument("--sim-procs", type=int, default=2, help="processes for the workers")
    parser.add_argument("--compare", metavar="REF", help="also run a git ref's dispatcher")
    parser.add_argument("--output", type=Path, help="JSON path (default under bench/results)")
    # internal: one process of simulated workers
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    for name, kind in (("--group", int), ("--workers", int), ("--slots", int),
                       ("--endpoint", str)):  # fmt: skip
        parser.add_argument(name, type=kind, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        args.prefetch = args.slots if args.prefetch == "slots" else int(args.prefetch)
        # Imports take seconds on a loaded machine: the window starts once all are ready.
        print("ready", flush=True)
        args.start_at = float(sys.stdin.readline())
        asyncio.run(_serve(args))
        return
    prefetches = str(args.prefetch).split(",")
    if not all(p == "slots" or p.isdigit() for p in prefetches):
        parser.error(f"--prefetch takes whole numbers or 'slots', not {args.prefetch!r}")
    prefetches = [p if p == "slots" else int(p) for p in prefetches]
    started = datetime.datetime.now(datetime.UTC)
    with tempfile.TemporaryDirectory(prefix="faas-sim-") as tmp_name:
        tmp = Path(tmp_name)
        with contextlib.ExitStack() as stack:
            sources = {"this": ROOT}
            if args.compare:
                sources = {args.compare: stack.enter_context(checkout(args.compare, tmp)),
                           "this": ROOT}  # fmt: skip
            # Every (source, prefetch) pair, interleaved per shape: the same load for all.
            variants = {
                label if len(prefetches) == 1 else f"{label} prefetch {p}":
                    (source, argparse.Namespace(**{**vars(args), "prefetch": p}))
                for label, source in sources.items() for p in prefetches
            }  # fmt: skip
            results: dict[str, list[dict]] = {label: [] for label in variants}
            ceilings: dict[str, dict] = {}
            for workers, slots in _shapes(args.shapes):
                for label, (source, options) in variants.items():
                    row = run_shape(workers, slots, options, source, tmp)
                    results[label].append(row)
                    print(label, json.dumps(row), flush=True)
            if args.ceiling:
                ((workers, slots),) = _shapes(args.ceiling)
                for label, (source, options) in variants.items():
                    zero = argparse.Namespace(**{**vars(options), "task_ms": 0})
                    ceilings[label] = run_shape(workers, slots, zero, source, tmp)
                    print(label, "ceiling", json.dumps(ceilings[label]), flush=True)
    report: dict[str, Any] = {
        "benchmark": "bench.sim",
        "command": "python -m bench.sim " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "date": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average": os.getloadavg(),
        "mode": args.mode,
        "task_ms": args.task_ms,
        "prefetch": prefetches,
        "duration_s": args.duration_s,
        "results": results,
        "ceiling_0ms": ceilings,
        "shape_ratio": {label: _shape_ratio(rows) for label, rows in results.items()},
    }
    if args.compare and len(prefetches) == 1:
        ref = results[args.compare]
        report["ratio_this_over_ref"] = {
            r["shape"]: round(r["tasks_per_s"] / b["tasks_per_s"], 3) if b["tasks_per_s"] else None
            for r, b in zip(results["this"], ref, strict=True)
        }
        if ceilings:
            a, b = ceilings["this"]["tasks_per_s"], ceilings[args.compare]["tasks_per_s"]
            report["ratio_this_over_ref"]["ceiling"] = round(a / b, 3) if b else None
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    out = args.output or RESULTS_DIR / f"sim-{args.mode}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    _plot(results, out.with_suffix(".png"), args.task_ms)
    print(f"wrote {out}")


def _shape_ratio(rows: list[dict]) -> dict[str, float] | None:
    """Many small workers against a few big ones with as many slots (256x4 vs 4x256)."""
    by_slots: dict[int, list[dict]] = {}
    for row in rows:
        by_slots.setdefault(row["slots"], []).append(row)
    for same in by_slots.values():
        if len(same) >= 2:
            many = max(same, key=lambda r: r["workers"])
            few = min(same, key=lambda r: r["workers"])
            if few["tasks_per_s"]:
                ratio = round(many["tasks_per_s"] / few["tasks_per_s"], 3)
                return {"many": many["shape"], "few": few["shape"], "many_over_few": ratio}
    return None


if __name__ == "__main__":
    main()
