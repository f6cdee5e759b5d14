"""Chaos: while a stream of mixed tasks flows, kill -9 workers one by one, the
dispatcher, and all workers at once; then every task must end correctly.

Runs in CI in about a minute per mode; `pytest tests/chaos --soak` runs a longer
variant (more tasks, more rounds of chaos)."""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from common.models import DispatchMode
from faas.platform import LocalPlatform
from tests.conftest import (
    INTEGRATION_DIR,
    deserialize,
    make_platform,
    register,
    serialize,
    wait_all,
)

sys.path.insert(0, str(INTEGRATION_DIR))
import userfuncs


def mix(count: int, rng: random.Random) -> list[tuple[str, float | int]]:
    kinds = []
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


class Chaos:
    """Bounded in time: each action is one kill or restart, then a short pause."""

    def __init__(self, platform: LocalPlatform, rng: random.Random) -> None:
        self.platform = platform
        self.rng = rng
        self.events: list[str] = []

    def kill_random_worker(self) -> None:
        alive = [w for w in self.platform.workers if w.alive()]
        if alive:
            victim = self.rng.choice(alive)
            victim.kill()
            self.events.append(f"kill -9 {victim.name}")
        self.platform.start_worker()

    def kill_dispatcher(self) -> None:
        assert self.platform.dispatcher is not None
        self.platform.dispatcher.kill()
        self.events.append("kill -9 dispatcher")
        time.sleep(0.5)
        self.platform.start_dispatcher()

    def kill_all_workers(self, pause_s: float) -> None:
        alive = [w for w in self.platform.workers if w.alive()]
        for worker in alive:
            worker.kill()
        self.events.append(f"kill -9 all {len(alive)} workers")
        time.sleep(pause_s)
        for _ in alive:
            self.platform.start_worker()


@pytest.mark.parametrize(
    "mode", [DispatchMode.PULL, DispatchMode.PUSH], ids=lambda m: f"{m.value}-mode"
)
def test_every_task_ends_correctly_through_chaos(
    tmp_path: Path, mode: DispatchMode, soak: bool
) -> None:
    rng = random.Random(7)
    rounds, per_round = (40, 1000) if soak else (8, 250)
    log = tmp_path / "started.log"
    with (
        make_platform(tmp_path, mode, workers=3, slots=4) as platform,
        httpx.Client(base_url=platform.url, timeout=60) as http,
    ):
        function_id = register(http, userfuncs.chaos_task)
        chaos = Chaos(platform, rng)
        plan: dict[str, tuple[int, str]] = {}
        for round_ in range(rounds):
            kinds = mix(per_round, rng)
            base = round_ * per_round
            payloads = [
                serialize(((str(log), base + k, kind, arg), {}))
                for k, (kind, arg) in enumerate(kinds)
            ]
            body = {"function_id": function_id, "payloads": payloads, "max_attempts": 10}
            response = http.post("/v1/tasks/batch", json=body)
            assert response.status_code == 201, response.text
            for k, task_id in enumerate(response.json()["task_ids"]):
                plan[task_id] = (base + k, kinds[k][0])
            # Chaos while the round's tasks flow
            if round_ % 4 == 3:
                chaos.kill_dispatcher()
            elif round_ % 4 == 1:
                chaos.kill_all_workers(pause_s=1.0)
            else:
                chaos.kill_random_worker()
            time.sleep(rng.uniform(0.5, 1.5))

        views = wait_all(http, list(plan), timeout_s=300)

    # Every task is terminal; COMPLETED ones are right; only the designed ones FAILED.
    completed = failed = 0
    for task_id, (i, kind) in plan.items():
        view = views[task_id]
        if kind == "raise":
            assert view["status"] == "FAILED", view
            assert view["error_kind"] == "user"
            assert deserialize(view["result"]).code == i
            failed += 1
        else:
            assert view["status"] == "COMPLETED", view
            assert deserialize(view["result"]) == i
            completed += 1
    started = Counter(int(line) for line in log.read_text().split())
    repeated = sum(started.values()) - len(started)
    print(
        f"\n[{mode}] chaos: {' | '.join(chaos.events)}\n"
        f"[{mode}] submitted {len(plan)}, completed {completed}, failed (designed) {failed}, "
        f"lost 0, repeated executions {repeated}"
    )
    assert set(started) == {i for i, _ in plan.values()}
