"""Chaos: mixed tasks flow while one fault at a time hits the platform; then every
task must end correctly, and the faults that presume nothing dead must repeat no
execution.

Each phase submits its own batch, injects its fault once the batch is flowing,
and waits for the batch to end, so lost tasks, wrong results, repeated
executions and the longest stall (no task finishing) are counted per phase:

  worker-main-kill   kill -9 of one worker's main process only (orphaned slots
                     would show as executions that never end)
  all-workers-kill   kill -9 of every worker's process group, restarted after 1 s
  worker-term        SIGTERM of one worker (as a scale-down): it drains, gives back
                     what it prefetched, and a new one starts           (0 repeats)
  dispatcher-kill    kill -9 of the dispatcher, restarted after 0.5 s   (0 repeats)
  dispatcher-term    SIGTERM of the dispatcher (as `kubectl delete pod`), then a
                     new one                                            (0 repeats)
  worker-stop        SIGSTOP of one worker past the liveness timeout, then SIGCONT
  gateway-kill       kill -9 of the gateway, restarted                  (0 repeats)
  redis-kill         kill -9 of redis-server, restarted on its append-only file
                                                                       (0 repeats)
  redis-full         Redis at maxmemory for 3 s                         (0 repeats)

Repeats are expected only where a worker is presumed dead (its tasks run again).
Local mode has no worker process: it runs the dispatcher's phases and those of the
gateway and Redis, and there a dispatcher killed with -9 takes its slots with it, so
that phase may repeat executions. About a minute per mode in CI; `--soak` runs five cycles of all phases with
larger batches, `--chaos-cycles N --chaos-phases a,b` any selection.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from common.models import DispatchMode
from faas.platform import LocalPlatform
from tests.conftest import INTEGRATION_DIR, deserialize, make_platform, register, serialize

sys.path.insert(0, str(INTEGRATION_DIR))
import userfuncs

NO_REPEATS = {
    "worker-term",
    "dispatcher-kill",
    "dispatcher-term",
    "gateway-kill",
    "redis-kill",
    "redis-full",
}


def mix(count: int, rng: random.Random) -> list[tuple[str, float | int]]:
    kinds: list[tuple[str, float | int]] = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.40:
            kinds.append(("noop", 0))
        elif roll < 0.65:
            kinds.append(
                ("sleep", rng.choice([0.01, 0.05, 0.1, 0.2, 1.0]) if rng.random() < 0.05 else 0.05)
            )
        elif roll < 0.80:
            kinds.append(("cpu", rng.randint(100_000, 1_000_000)))
        elif roll < 0.90:
            kinds.append(("raise", 0))
        else:
            kinds.append(("numpy", rng.randint(10, 10_000)))
    return kinds


class Faults:
    """One method per phase; each injects its fault and restores service."""

    def __init__(self, platform: LocalPlatform, rng: random.Random) -> None:
        self.platform = platform
        self.rng = rng

    def _alive_workers(self) -> list:  # type: ignore[type-arg]
        return [w for w in self.platform.workers if w.alive()]

    def worker_main_kill(self) -> None:
        victim = self.rng.choice(self._alive_workers())
        assert victim.popen is not None
        os.kill(victim.popen.pid, signal.SIGKILL)  # the leader only: slots must follow
        victim.popen.wait(timeout=10)
        self.platform.start_worker()

    def all_workers_kill(self) -> None:
        alive = self._alive_workers()
        for worker in alive:
            worker.kill()
        time.sleep(1.0)  # an outage, not a blip
        for _ in alive:
            self.platform.start_worker()

    def worker_term(self) -> None:
        victim = self.rng.choice(self._alive_workers())
        assert victim.popen is not None
        os.kill(victim.popen.pid, signal.SIGTERM)  # the leader only, as Kubernetes does
        self.platform.start_worker()
        assert victim.popen.wait(timeout=30) == 0

    def dispatcher_kill(self) -> None:
        assert self.platform.dispatcher is not None
        self.platform.dispatcher.kill()
        time.sleep(0.5)
        self.platform.start_dispatcher()

    def dispatcher_term(self) -> None:
        assert self.platform.dispatcher is not None and self.platform.dispatcher.popen is not None
        self.platform.dispatcher.popen.send_signal(signal.SIGTERM)
        self.platform.dispatcher.popen.wait(timeout=30)
        self.platform.start_dispatcher()

    def worker_stop(self) -> None:
        victim = self.rng.choice(self._alive_workers())
        victim.signal(signal.SIGSTOP)
        time.sleep(1.5)  # past the 1 s liveness timeout: presumed dead
        victim.signal(signal.SIGCONT)

    def gateway_kill(self) -> None:
        assert self.platform.gateway is not None
        self.platform.gateway.kill()
        self.platform.start_gateway()

    def redis_kill(self) -> None:
        assert self.platform.redis is not None
        self.platform.redis.kill()
        time.sleep(0.5)
        self.platform.redis.start()  # same port, same append-only file

    def redis_full(self) -> None:
        client = redis.Redis.from_url(self.platform.redis_url)
        try:
            client.config_set("maxmemory", 1)  # every write is refused with OOM
            time.sleep(3.0)
        finally:
            client.config_set("maxmemory", 0)
            client.close()

    def by_name(self, phase: str) -> Callable[[], None]:
        return getattr(self, phase.replace("-", "_"))


PHASES = [
    "worker-main-kill", "all-workers-kill", "worker-term", "dispatcher-kill", "dispatcher-term", "worker-stop",
    "gateway-kill", "redis-kill", "redis-full",
]  # fmt: skip
WORKER_PHASES = {"worker-main-kill", "all-workers-kill", "worker-term", "worker-stop"}


def phases_of(mode: DispatchMode, chosen: list[str]) -> tuple[list[str], set[str]]:
    """The phases a mode runs, and those of them that must repeat no execution."""
    if mode != DispatchMode.LOCAL:
        return chosen, NO_REPEATS
    return [p for p in chosen if p not in WORKER_PHASES], NO_REPEATS - {"dispatcher-kill"}


@dataclass
class PhaseResult:
    phase: str
    tasks: int
    completed: int
    failed: int
    repeated: int
    stall_s: float

    def line(self) -> str:
        return (
            f"{self.phase:18} tasks {self.tasks:5}  completed {self.completed:5}  "
            f"failed (designed) {self.failed:4}  lost 0  wrong 0  repeated {self.repeated:3}  "
            f"longest stall {self.stall_s:5.2f} s"
        )


BALLAST = bytes(72 * 1024)


def call(http: httpx.Client, method: str, url: str, **kwargs) -> httpx.Response:  # type: ignore[no-untyped-def]
    """A request that rides out a gateway or Redis outage (bounded)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            response = http.request(method, url, **kwargs)
            if response.status_code != 503:
                return response
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{method} {url} failed for 60 s"
        time.sleep(0.2)


def wait_ended(http: httpx.Client, task_ids: list[str], timeout_s: float) -> dict[str, dict]:
    deadline = time.monotonic() + timeout_s
    views: dict[str, dict] = {}
    pending = list(task_ids)
    while pending and time.monotonic() < deadline:
        body = {"task_ids": pending[:1000], "wait": 5}
        response = call(http, "POST", "/v1/tasks/wait", json=body)
        assert response.status_code == 200, response.text
        for view in response.json()["tasks"]:
            if view["status"] in ("COMPLETED", "FAILED"):
                views[view["task_id"]] = view
        pending = [t for t in pending if t not in views]
    assert not pending, f"{len(pending)} tasks lost or stuck, e.g. {pending[:3]}"
    return views


def run_phase(
    http: httpx.Client, function_id: str, faults: Faults, phase: str, first: int, size: int,
    log: Path, rng: random.Random,
) -> PhaseResult:  # fmt: skip
    kinds = mix(size, rng)
    # Every 16th task's arguments are over 64 KiB: Redis keeps them under their own key.
    payloads = [
        serialize(((str(log), first + k, kind, arg, BALLAST if k % 16 == 0 else b""), {}))
        for k, (kind, arg) in enumerate(kinds)
    ]
    body = {"function_id": function_id, "payloads": payloads, "max_attempts": 10}
    response = call(http, "POST", "/v1/tasks/batch", json=body)
    assert response.status_code == 201, response.text
    plan = {t: (first + k, kinds[k][0]) for k, t in enumerate(response.json()["task_ids"])}
    # Inject once the batch is flowing: about a fifth of it has started.
    deadline = time.monotonic() + 30
    while len(started(log) & set(range(first, first + size))) < size // 5:
        assert time.monotonic() < deadline, "the batch never started"
        time.sleep(0.02)
    injected_ms = time.time() * 1000
    faults.by_name(phase)()
    views = wait_ended(http, list(plan), timeout_s=180)

    completed = failed = 0
    for task_id, (i, kind) in plan.items():
        view = views[task_id]
        if kind == "raise":
            assert view["status"] == "FAILED" and view["error_kind"] == "user", view
            assert deserialize(view["result"]).code == i
            failed += 1
        else:
            assert view["status"] == "COMPLETED", (phase, view)
            assert deserialize(view["result"]) == i, (phase, view)
            completed += 1
    counts = Counter(int(line) for line in log.read_text().split())
    mine = {i for i, _ in plan.values()}
    assert mine <= set(counts), "a task ended without running"
    repeated = sum(counts[i] - 1 for i in mine)
    ends = sorted(v["finished_at_ms"] for v in views.values() if v["finished_at_ms"] > injected_ms)
    gaps = [b - a for a, b in zip([injected_ms, *ends], ends, strict=False)]
    return PhaseResult(phase, len(plan), completed, failed, repeated, max(gaps, default=0) / 1000)


def started(log: Path) -> set[int]:
    return {int(line) for line in log.read_text().split()} if log.exists() else set()


@pytest.mark.parametrize(
    "mode",
    [DispatchMode.LOCAL, DispatchMode.PULL, DispatchMode.PUSH],
    ids=lambda m: f"{m.value}-mode",
)
def test_every_task_ends_correctly_through_chaos(
    tmp_path: Path, mode: DispatchMode, request: pytest.FixtureRequest, soak: bool
) -> None:
    rng = random.Random(7)
    cycles = request.config.getoption("--chaos-cycles") or (5 if soak else 1)
    phases, no_repeats = phases_of(mode, request.config.getoption("--chaos-phases") or PHASES)
    if not phases:
        pytest.skip(f"none of the chosen phases applies to {mode.value} mode")
    size = 1000 if soak else max(300, 2000 // len(phases) + 1)
    log = tmp_path / "started.log"
    results: list[PhaseResult] = []
    with (
        make_platform(tmp_path, mode, workers=3, slots=4) as platform,
        httpx.Client(base_url=platform.url, timeout=60) as http,
    ):
        function_id = register(http, userfuncs.chaos_task)
        faults = Faults(platform, rng)
        for cycle in range(cycles):
            for n, phase in enumerate(phases):
                first = (cycle * len(phases) + n) * size
                result = run_phase(http, function_id, faults, phase, first, size, log, rng)
                results.append(result)
                print(f"[{mode}] {result.line()}", flush=True)

    total = sum(r.tasks for r in results)
    print(f"\n[{mode}] chaos: {cycles} cycle(s), {total} tasks, lost 0, wrong 0")
    for phase in dict.fromkeys(r.phase for r in results):
        mine = [r for r in results if r.phase == phase]
        print(
            f"[{mode}] {phase:18} repeated {sum(r.repeated for r in mine):4} in {len(mine)} "
            f"round(s); longest stall {max(r.stall_s for r in mine):.2f} s"
        )
    assert total >= 2000 or cycles * len(phases) < len(phases_of(mode, PHASES)[0])
    unexpected = [r.line() for r in results if r.phase in no_repeats and r.repeated]
    assert not unexpected, "repeated executions where nothing was presumed dead:\n" + "\n".join(
        unexpected
    )
