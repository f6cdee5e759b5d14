"""`python -m bench --baselines ray,celery` and `python -m bench --compare REF`: the
platform side by side with what a user would pick instead, and with another version of
itself, in the same interleaved rounds so that all see the same machine noise.

Every system is started once, warmed up, then each round runs W1 (sequential no-op
calls: p50, p99, and the CPU its processes used per call), W2 (2,000 no-op tasks: batch
throughput; and, for the platform, one HTTP request per task) and W4 (echo of 1 MB of
bytes: p50) on each system in turn, the order rotating from round to round.
`--baselines floor` adds the design's floor (bench/baselines/floor.py), which runs W1 and
W4. Reported: every round, each system's median over the rounds, and the ratios
ours/baseline (per mode) and this/REF (per mode).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

import cloudpickle

from bench import baselines, workloads
from bench.__main__ import Bench, b64, machine, percentiles
from bench.checkout import ROOT, checkout
from bench.ports import Ports, parse_range
from bench.proc import cpu_by_role, cpu_by_tree
from bench.side import Side

OCTET_STREAM = "application/octet-stream"  # the binary form of /v1 task calls

PLATFORM_SIDE = Path(__file__).with_name("platform_side.py")
READING = ("ratio = ours / theirs of each figure: for latencies (_ms) below 1 means ours "
           "is faster, for CPU per call (W1_cpu_ms_per_call) that ours uses less, for "
           "throughputs (_tasks_per_s) above 1 means ours is faster")  # fmt: skip
WARMUP = {"w1": 100, "w2": 200, "w4": 3}


class System(Protocol):
    name: str
    info: dict[str, Any]
    side: Side

    def w1(self, n: int) -> list[float]: ...
    def w2(self, n: int) -> dict[str, Any] | None: ...
    def w2_per_request(self, n: int) -> dict[str, Any] | None: ...
    def w4(self, n: int) -> list[float]: ...
    def close(self) -> None: ...


class PlatformSystem:
    """A platform (this tree's or a ref's checkout) held by a side process, driven here
    over HTTP by the same client as the main benchmark."""

    def __init__(self, name: str, tree: Path, config: dict[str, Any], log: Path) -> None:
        self.name = name
        argv = [sys.executable, "-c", PLATFORM_SIDE.read_text(), json.dumps(config)]
        self.side = Side(name, argv, tree, log)
        self.info = {k: v for k, v in self.side.info.items() if k != "ready"}
        self.bench = Bench(self.side.info["port"])
        self.call_body: dict[str, dict[str, Any]] = {}
        try:
            for fn in (workloads.noop, workloads.echo):
                self.call_body[fn.__name__] = {"function_id": self.bench.register(fn)}
        except BaseException:
            self.close()
            raise
        self.blob = os.urandom(2**20)
        self.call_body["noop"]["payload"] = b64(((), {}))
        self.call_body["echo"]["payload"] = b64(((self.blob,), {}))
        # W4 as the SDK sends it: the binary form (raw pickles), where the tree has it.
        self.raw_echo = cloudpickle.dumps(((self.blob,), {}))
        echoed = self._binary_echo()
        self.binary = echoed is not None and cloudpickle.loads(echoed) == self.blob
        self.info["W4_form"] = "binary" if self.binary else "json"

    def _binary_echo(self) -> bytes | None:
        path = f"/v1/tasks?function_id={self.call_body['echo']['function_id']}&wait=60"
        headers = {"content-type": OCTET_STREAM, "accept": OCTET_STREAM}
        status, head, body = self.bench.http.raw("POST", path, self.raw_echo, headers)
        if status != 201 or head.get("x-faas-status") != "COMPLETED":
            return None
        return body

    def _call(self, body: dict[str, Any]) -> dict[str, Any]:
        status, view = self.bench.http.request("POST", "/v1/tasks?wait=60", body)
        assert status == 201 and view["status"] == "COMPLETED", view
        return view

    def w1(self, n: int) -> list[float]:
        return baselines.timed_s(lambda: self._call(self.call_body["noop"]), n)

    def w2(self, n: int) -> dict[str, Any]:
        return self.bench.w2_batch(n)

    def w2_per_request(self, n: int) -> dict[str, Any] | None:
        return self.bench.w2_per_request(n)

    def w4(self, n: int) -> list[float]:
        if self.binary:

            def call() -> None:
                assert self._binary_echo() is not None, "a binary W4 call did not complete"

            return baselines.timed_s(call, n)
        return baselines.timed_s(lambda: self._call(self.call_body["echo"]), n)

    def close(self) -> None:
        self.bench.http.close()
        self.side.close()


class FloorSystem:
    """The design's floor (bench/baselines/floor.py), held by its side process and driven
    here over HTTP by the platform's client. It runs W1 and W4, not W2: what it measures
    is the latency of one call."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.side = Side(name, argv, ROOT, log)
        self.info = {k: v for k, v in self.side.info.items() if k != "ready"}
        self.bench = Bench(self.side.info["port"])
        self.noop = cloudpickle.dumps(((), {}))
        self.blob = os.urandom(2**20)
        self.echo = cloudpickle.dumps(((self.blob,), {}))
        assert cloudpickle.loads(self._call("echo", self.echo)) == self.blob

    def _call(self, function: str, body: bytes) -> bytes:
        status, _, result = self.bench.http.raw("POST", f"/call/{function}", body, {})
        assert status == 200, result[:200]
        return result

    def w1(self, n: int) -> list[float]:
        return baselines.timed_s(lambda: self._call("noop", self.noop), n)

    def w2(self, n: int) -> None:
        return None

    def w2_per_request(self, n: int) -> None:
        return None

    def w4(self, n: int) -> list[float]:
        return baselines.timed_s(lambda: self._call("echo", self.echo), n)

    def close(self) -> None:
        self.bench.http.close()
        self.side.close()


class BaselineSystem:
    """Ray or Celery, in a side process that starts it and is its client."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.side = Side(name, argv, ROOT, log)
        self.info = {k: v for k, v in self.side.info.items() if k != "ready"}

    def w1(self, n: int) -> list[float]:
        return self.side.call("w1", n=n)

    def w2(self, n: int) -> dict[str, Any]:
        return self.side.call("w2", n=n)

    def w2_per_request(self, n: int) -> dict[str, Any] | None:
        return None  # no HTTP in front: W2's one-request-per-task form has no equivalent

    def w4(self, n: int) -> list[float]:
        return self.side.call("w4", n=n)

    def close(self) -> None:
        self.side.close()


# -- pure logic: order, summaries, ratios --------------------------------------------------


def rotation(names: list[str], round_: int) -> list[str]:
    """Round r starts with the r-th system: none always runs first (or last)."""
    if not names:
        return []
    k = round_ % len(names)
    return names[k:] + names[:k]


def round_figures(w1_s: list[float], w2: dict[str, Any] | None, w2r: dict[str, Any] | None,
                  w4_s: list[float], w1_cpu_s: float | None = None
                  ) -> dict[str, float]:  # fmt: skip
    """One round of one system, as the flat figures that medians and ratios work on.
    `w1_cpu_s`: the CPU time its processes used over W1 (for Ray and Celery, their
    client's too), which the machine's noise moves less than the latency."""
    w1, w4 = percentiles(w1_s), percentiles(w4_s)
    figures = {"W1_p50_ms": w1["p50_ms"], "W1_p99_ms": w1["p99_ms"], "W4_p50_ms": w4["p50_ms"]}
    if w1_cpu_s is not None:
        figures["W1_cpu_ms_per_call"] = round(1000 * w1_cpu_s / len(w1_s), 3)
    if w2 is not None:
        figures["W2_batch_tasks_per_s"] = float(w2["tasks_per_s"])
    if w2r is not None:
        figures["W2_per_request_tasks_per_s"] = float(w2r["tasks_per_s"])
    return figures


def medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    keys = [k for k in rounds[0] if all(k in r for r in rounds)]
    return {k: round(statistics.median(r[k] for r in rounds), 3) for k in keys}


def ratios(ours: dict[str, float], theirs: dict[str, float]) -> dict[str, float | None]:
    """ours / theirs for every figure both have (None where theirs is 0)."""
    return {k: round(ours[k] / theirs[k], 3) if theirs[k] else None
            for k in ours if k in theirs}  # fmt: skip


def platform_name(tree_label: str, mode: str) -> str:
    return f"{tree_label}/{mode}"


def summarize(medians_by_system: dict[str, dict[str, float]], modes: list[str],
              baseline_names: list[str], ref: str | None) -> dict[str, Any]:  # fmt: skip
    """The ratios: ours over each baseline, per mode; this tree over REF, per mode."""
    summary: dict[str, Any] = {}
    ran = [b for b in baseline_names if b in medians_by_system]
    if ran:
        summary["ours_over_baselines"] = {
            mode: {b: ratios(medians_by_system[platform_name("this", mode)],
                             medians_by_system[b]) for b in ran}
            for mode in modes
        }  # fmt: skip
    if ref is not None:
        summary[f"this_over_{ref}"] = {
            mode: ratios(medians_by_system[platform_name("this", mode)],
                         medians_by_system[platform_name(ref, mode)])
            for mode in modes
        }  # fmt: skip
    return summary


# -- the run -----------------------------------------------------------------------------------


def _ray_ports(ports: Ports) -> dict[str, Any]:
    names = ("gcs", "object_manager", "node_manager", "agent_listen", "agent_grpc",
             "runtime_env_agent", "metrics_export", "dashboard")  # fmt: skip
    chosen: dict[str, Any] = {name: ports.take() for name in names}
    if ports.allowed is not None:  # else Ray's own worker port range
        block = ports.take_block(24)  # a port per worker process: 4 slots need ~6
        chosen["workers"] = [block.start, block[-1]]
    return chosen


def start_baseline(name: str, slots: int, ports: Ports, logs: Path
                   ) -> BaselineSystem | FloorSystem:  # fmt: skip
    side = baselines.BASELINES[name].side
    if name == "floor":
        argv = [sys.executable, "-m", side, "--slots", str(slots), "--port", str(ports.take())]
        return FloorSystem(name, argv, logs / f"{name}.log")
    if name == "ray":
        argv = [sys.executable, "-m", side, "--cpus", str(slots),
                "--ports", json.dumps(_ray_ports(ports))]  # fmt: skip
    else:
        argv = [sys.executable, "-m", side, "--concurrency", str(slots),
                "--redis-port", str(ports.take())]  # fmt: skip
    return BaselineSystem(name, argv, logs / f"{name}.log")


def platform_config(mode: str, args: argparse.Namespace, ports: Ports, scratch: Path
                    ) -> dict[str, Any]:  # fmt: skip
    return {"mode": mode, "workers": args.workers, "slots": args.slots, "port": ports.take(),
            "dispatcher_port": ports.take(), "redis_port": ports.take(),
            "gateway_workers": args.gateway_workers, "data_dir": str(scratch / "data"),
            "log_dir": str(scratch / "logs")}  # fmt: skip


def run(args: argparse.Namespace, modes: list[str]) -> dict[str, Any]:
    names = baselines.parse(args.baselines or "")
    skipped: dict[str, str] = {}
    for name in names:
        if (hint := baselines.missing(name)) is not None:
            print(hint, flush=True)
            skipped[name] = hint
    ports = Ports(parse_range(args.ports) if args.ports else None)
    total_slots = args.slots * args.workers  # what Ray's CPUs and Celery's processes match
    systems: dict[str, System] = {}
    rounds: dict[str, list[dict[str, float]]] = {}
    w2_detail: dict[str, list[dict[str, Any]]] = {}
    w1_roles: dict[str, list[dict[str, float]]] = {}  # CPU ms per W1 call, by process role
    samples: dict[str, dict[str, list[float]]] = {}
    load = [os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="faas-bench-") as tmp, contextlib.ExitStack() as stack:
        scratch = Path(tmp)
        trees = {"this": ROOT}
        if args.compare:
            trees[args.compare] = stack.enter_context(checkout(args.compare, scratch))
        for mode in modes:
            for label, tree in trees.items():
                name = platform_name(label, mode)
                print(f"starting {name} ...", flush=True)
                where = scratch / name.replace("/", "_")
                config = platform_config(mode, args, ports, where)
                systems[name] = PlatformSystem(name, tree, config, where / "side.log")
                stack.callback(systems[name].close)
        for name in names:
            if name in skipped:
                continue
            print(f"starting {name} ...", flush=True)
            try:
                systems[name] = start_baseline(name, total_slots, ports, scratch)
            except RuntimeError as exc:  # e.g. Ray cannot start on this machine: say why
                print(f"{name} did not start, skipped: {exc}", flush=True)
                skipped[name] = str(exc)[-3000:]
                continue
            stack.callback(systems[name].close)
        for name, system in systems.items():  # imports, workers, first connections
            print(f"warming up {name} ...", flush=True)
            system.w1(WARMUP["w1"])
            system.w2(WARMUP["w2"])
            system.w4(WARMUP["w4"])
        roots = {name: system.side.proc.pid for name, system in systems.items()}
        idle = {name: [0.0, 0.0] for name in systems}  # CPU s, wall s while others ran
        for r in range(args.rounds):
            for name in rotation(list(systems), r):
                system = systems[name]
                cpu0, t0 = cpu_by_tree(roots), time.monotonic()
                roles0 = cpu_by_role(roots[name])
                w1 = system.w1(args.w1)
                per_call = {k: v - roles0.get(k, 0.0) for k, v in cpu_by_role(roots[name]).items()}
                w1_cpu_s = sum(per_call.values())  # the whole tree: every role of it
                w1_roles.setdefault(name, []).append(
                    {k: round(1000 * v / len(w1), 3) for k, v in per_call.items()}
                )
                w2 = system.w2(args.w2)
                w2r = system.w2_per_request(args.w2)
                w4 = system.w4(args.w4)
                cpu1, wall = cpu_by_tree(roots), time.monotonic() - t0
                for other in systems.keys() - {name}:
                    idle[other][0] += cpu1[other] - cpu0[other]
                    idle[other][1] += wall
                figures = round_figures(w1, w2, w2r, w4, w1_cpu_s)
                rounds.setdefault(name, []).append(figures)
                w2_detail.setdefault(name, []).append({"batch": w2, "per_request": w2r})
                kept = samples.setdefault(name, {"W1": [], "W4": []})
                kept["W1"] += [round(s * 1000, 3) for s in w1]
                kept["W4"] += [round(s * 1000, 3) for s in w4]
                print(f"round {r + 1} {name}: {json.dumps(figures)}", flush=True)
            load.append(os.getloadavg())
        infos = {name: system.info for name, system in systems.items()}
    by_system = {name: medians(rs) for name, rs in rounds.items()}
    settings = {
        "modes": modes, "slots": args.slots, "workers": args.workers,
        "baseline_slots": total_slots, "gateway_workers": args.gateway_workers,
        "rounds": args.rounds, "w1": args.w1, "w2": args.w2, "w4": args.w4,
        "baselines": names, "compare": args.compare, "ports": args.ports,
    }  # fmt: skip
    return {
        "machine": machine(),
        "load_average_per_round": [[round(x, 2) for x in avg] for avg in load],
        "settings": settings,
        "systems": infos,
        # What each system used while the others were measured: the noise it adds to them.
        "idle_cpu_percent_of_a_core": {
            name: round(cpu / wall * 100, 1) if wall else None for name, (cpu, wall) in idle.items()
        },
        "skipped": skipped,
        "reading": READING,
        **summarize(by_system, modes, names, args.compare),
        "medians": by_system,
        "rounds": rounds,
        "w2_detail": w2_detail,
        "w1_cpu_ms_per_call_by_role": {name: medians(rs) for name, rs in w1_roles.items()},
        "samples_ms": samples,
    }


def file_stem(modes: list[str], baseline_names: list[str], ref: str | None) -> str:
    """'local-pull-vs-ray-celery', 'local-vs-main'."""
    others = [*baseline_names, *([ref.replace("/", "_")] if ref else [])]
    return "-".join(modes) + "-vs-" + "-".join(others)
