"""The pod-deleting side of the chaos test, apart from kubectl so it can be run
against a fake cluster (tests/e2e/test_harness.py) as well as a real one.

It strikes the components in turn (shuffled once, then round-robin, so every
component is hit as often as any other), deletes one pod of that component,
waits until a *new* pod of it (a uid not seen before the strike) is Ready and
records how long that took, pauses, and goes on until told to stop: the test
stops it only when every task has ended, so pods die during the whole run, not
only while tasks are being submitted."""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Pod = dict[str, Any]


@dataclass
class Strike:
    component: str
    pod: str
    at: float
    recovered_after: float | None = None  # seconds until a new pod was Ready; None: never


def is_ready(pod: Pod) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class PodChaos:
    def __init__(
        self,
        *,
        list_pods: Callable[[str], list[Pod]],
        delete_pod: Callable[[str], None],
        components: list[str],
        rng: random.Random,
        pause_s: tuple[float, float] = (2.0, 4.0),
        recovery_timeout_s: float = 180.0,
        poll_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.list_pods, self.delete_pod = list_pods, delete_pod
        self.components = list(components)
        rng.shuffle(self.components)
        self.rng, self.pause_s = rng, pause_s
        self.recovery_timeout_s, self.poll_s, self.clock = recovery_timeout_s, poll_s, clock
        self.strikes: list[Strike] = []
        self.struck = threading.Condition()

    def run(self, stop: threading.Event) -> None:
        """Strike until `stop` is set (set it when every task has ended)."""
        turn = 0
        while not stop.is_set():
            self.strike(self.components[turn % len(self.components)])
            turn += 1
            if stop.wait(self.rng.uniform(*self.pause_s)):
                return

    def strike(self, component: str) -> Strike | None:
        before = self.list_pods(component)
        alive = [p for p in before if not p["metadata"].get("deletionTimestamp")]
        if not alive:
            return None
        victim = self.rng.choice(alive)["metadata"]["name"]
        seen = {p["metadata"]["uid"] for p in before}
        self.delete_pod(victim)
        strike = Strike(component, victim, self.clock())
        with self.struck:
            self.strikes.append(strike)
            self.struck.notify_all()
        deadline = strike.at + self.recovery_timeout_s
        pause = threading.Event()
        while self.clock() < deadline:
            if any(
                is_ready(p) and p["metadata"]["uid"] not in seen for p in self.list_pods(component)
            ):
                strike.recovered_after = self.clock() - strike.at
                break
            pause.wait(self.poll_s)  # polling the cluster's state: nothing to wait on
        return strike

    def count(self, component: str) -> int:
        return sum(1 for s in self.strikes if s.component == component)

    def wait_for_rounds(self, rounds: int, timeout_s: float) -> bool:
        """Block until every component has been struck `rounds` times."""
        with self.struck:
            return self.struck.wait_for(
                lambda: all(self.count(c) >= rounds for c in self.components), timeout_s
            )

    def report(self) -> str:
        lines = []
        for component in sorted(self.components):
            strikes = [s for s in self.strikes if s.component == component]
            times = [s.recovered_after for s in strikes if s.recovered_after is not None]
            never = len(strikes) - len(times)
            summary = (
                f"recovered in median {statistics.median(times):.1f} s, max {max(times):.1f} s"
                if times
                else "no recovery measured"
            )
            lines.append(
                f"  {component:<10} deleted {len(strikes)}: {summary}"
                + (f", {never} never recovered" if never else "")
            )
        return "\n".join(lines)
