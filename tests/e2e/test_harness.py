"""The e2e harness checked without a cluster (these run in every `hack/test.sh`):
the mode is read from the rendered chart by name in every mode; the functions the
e2e tests register load where their test module cannot be imported (as on a
worker); the chaos loop strikes every component, goes on after the submits end
and stops only when told that all tasks ended, and measures recovery, against a
fake cluster."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import threading
from typing import Any

import pytest

from tests.chart.conftest import documents, helm  # noqa: F401  (helm is a fixture)
from tests.e2e.chaos import PodChaos, is_ready
from tests.e2e.conftest import mode_of
from tests.e2e.test_api import double, serialize, serialize_function

# -- the mode, by name ----------------------------------------------------------------


@pytest.mark.parametrize(
    "sets",
    [[], ["apiKey.enabled=true"], ["redis.auth.enabled=false"], ["userCode.configMap=code"]],
    ids=["default", "api-key", "no-redis-auth", "user-code"],
)
@pytest.mark.parametrize("mode", ["local", "pull", "push"])
def test_the_mode_is_read_by_name_from_the_dispatcher(
    helm: str,  # noqa: F811
    mode: str,
    sets: list[str],
) -> None:
    (dispatcher,) = [
        d
        for d in documents(helm, f"mode={mode}", *sets)
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "faas-dispatcher"
    ]
    assert mode_of(dispatcher) == mode


def test_reading_the_mode_by_position_was_wrong(helm: str) -> None:  # noqa: F811
    (dispatcher,) = [
        d
        for d in documents(helm, "mode=local")
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "faas-dispatcher"
    ]
    env = dispatcher["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[2].get("value") != "local", "the old env[2] lookup happens to work again?"


# -- what the e2e tests register loads on a worker --------------------------------------

LOAD = """
import base64, pickle, sys
import dill  # the course's payloads may need it, as on a worker
fn = pickle.loads(base64.b64decode(sys.stdin.read()))
print(fn(21))
"""


def load_where_tests_are_not_importable(payload_b64: str) -> subprocess.CompletedProcess[str]:
    """Unpickle and call in `python -I` from another directory: like a worker, it has
    the platform's packages but not this repository's tests package."""
    return subprocess.run(
        [sys.executable, "-I", "-c", LOAD],
        input=payload_b64, capture_output=True, text=True, timeout=60, cwd=os.sep,
    )  # fmt: skip


def test_the_course_contract_function_travels_by_value() -> None:
    done = load_where_tests_are_not_importable(serialize_function(double).replace("\n", ""))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "42"


def test_the_check_catches_a_function_pickled_by_reference() -> None:
    # What test_api did: dill keeps a reference to the defining module
    by_reference = serialize(lambda x: x * 2).replace("\n", "")
    done = load_where_tests_are_not_importable(by_reference)
    assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr


# -- the chaos loop, against a fake cluster ----------------------------------------------


class FakeCluster:
    """Pods per component; a deleted pod is replaced by a new one (new uid) that is
    Ready after `ready_after` listings of its component, except for components in
    `never_back`."""

    def __init__(self, components: list[str], ready_after: int = 2, never_back: tuple = ()):
        self._uids = itertools.count()
        self._lock = threading.Lock()
        self.ready_after, self.never_back = ready_after, never_back
        self.pods: dict[str, list[dict[str, Any]]] = {
            c: [self._pod(c, ready=True)] for c in components
        }
        self.countdown: dict[str, int] = {}
        self.deleted: list[str] = []

    def _pod(self, component: str, *, ready: bool) -> dict[str, Any]:
        uid = f"uid-{next(self._uids)}"
        return {
            "metadata": {"name": f"{component}-{uid}", "uid": uid},
            "status": {"conditions": [{"type": "Ready", "status": str(ready)}]},
        }

    def list_pods(self, component: str) -> list[dict[str, Any]]:
        with self._lock:
            for pod in self.pods[component]:
                uid = pod["metadata"]["uid"]
                if uid in self.countdown:
                    self.countdown[uid] -= 1
                    if self.countdown[uid] <= 0:
                        pod["status"]["conditions"][0]["status"] = "True"
                        del self.countdown[uid]
            return [dict(p) for p in self.pods[component]]

    def delete_pod(self, name: str) -> None:
        with self._lock:
            self.deleted.append(name)
            component = name.split("-uid-")[0]
            self.pods[component] = [
                p for p in self.pods[component] if p["metadata"]["name"] != name
            ]
            if component not in self.never_back:
                replacement = self._pod(component, ready=False)
                self.countdown[replacement["metadata"]["uid"]] = self.ready_after
                self.pods[component].append(replacement)


def fast_chaos(cluster: FakeCluster, components: list[str], **kwargs: Any) -> PodChaos:
    return PodChaos(
        list_pods=cluster.list_pods, delete_pod=cluster.delete_pod, components=components,
        rng=random.Random(7), pause_s=(0.0, 0.001), poll_s=0.001, **kwargs,
    )  # fmt: skip


def test_the_chaos_loop_strikes_every_component_until_all_tasks_ended() -> None:
    components = ["gateway", "dispatcher", "redis", "worker"]
    cluster = FakeCluster(components)
    chaos = fast_chaos(cluster, components)
    all_ended = threading.Event()
    thread = threading.Thread(target=chaos.run, args=(all_ended,), daemon=True)
    thread.start()
    try:
        # The submits stop once every component was struck twice...
        assert chaos.wait_for_rounds(2, timeout_s=20)
        at_last_submit = len(chaos.strikes)
        # ...and pods keep dying while the tasks still run
        with chaos.struck:
            assert chaos.struck.wait_for(lambda: len(chaos.strikes) >= at_last_submit + 4, 20)
    finally:
        all_ended.set()
        thread.join(20)
    assert not thread.is_alive(), "the loop must stop once all tasks ended"
    assert {s.component for s in chaos.strikes} == set(components)
    assert [s.pod for s in chaos.strikes] == cluster.deleted
    assert all(s.recovered_after is not None for s in chaos.strikes)
    # Round-robin: no component is struck twice before every other once
    first_round = [s.component for s in chaos.strikes[: len(components)]]
    assert sorted(first_round) == sorted(components)
    report = chaos.report()
    for component in components:
        assert f"{component} " in report and "recovered in median" in report


def test_a_component_that_never_comes_back_is_reported() -> None:
    cluster = FakeCluster(["redis"], never_back=("redis",))
    chaos = fast_chaos(cluster, ["redis"], recovery_timeout_s=0.05)
    strike = chaos.strike("redis")
    assert strike is not None and strike.recovered_after is None
    assert "1 never recovered" in chaos.report()
    assert chaos.strike("redis") is None  # nothing left to delete: no strike counted
    assert chaos.count("redis") == 1


def test_ready_means_the_ready_condition_and_not_terminating() -> None:
    pod = {"metadata": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert is_ready(pod)
    pod["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    assert not is_ready(pod)
