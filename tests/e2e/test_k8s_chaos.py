"""kubectl delete pod on every component (workers, the dispatcher, the gateway and
Redis), in turn, from the first submit until the last task has ended; then every
accepted task must have ended correctly, each component must have been deleted
at least ROUNDS times and come back, and the report says how many executions
were repeated (every execution records itself in a small recorder Redis of its
own, outside the platform, read through a port-forward) and how fast each
component recovered. Submits use idempotency keys, so a submit retried after a
lost answer never duplicates."""

from __future__ import annotations

import collections
import os
import random
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis

from faas import Client
from faas.client import dumps, unwrap
from tests.e2e.chaos import PodChaos
from tests.e2e.conftest import (
    NAMESPACE,
    URL,
    eventually,
    kubectl,
    kubectl_binary,
    mode,
    pods,
)

RUN = uuid.uuid4().hex[:8]
ROUNDS = int(os.environ.get("FAAS_CHAOS_ROUNDS", "2"))  # deletions per component, at least
TASK_S = 0.5
RECORDER = "faas-chaos-recorder"
RECORDER_MANIFEST = f"""
apiVersion: v1
kind: Pod
metadata:
  name: {RECORDER}
  labels: {{app.kubernetes.io/name: {RECORDER}}}
spec:
  securityContext:
    runAsNonRoot: true
    runAsUser: 999
    seccompProfile: {{type: RuntimeDefault}}
  containers:
    - name: redis
      image: redis:7.2-alpine
      args: [redis-server, --save, "", --appendonly, "no", --protected-mode, "no"]
      ports: [{{containerPort: 6379}}]
      readinessProbe: {{exec: {{command: [redis-cli, ping]}}, periodSeconds: 2}}
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: {{drop: [ALL]}}
---
apiVersion: v1
kind: Service
metadata:
  name: {RECORDER}
spec:
  selector: {{app.kubernetes.io/name: {RECORDER}}}
  ports: [{{port: 6379}}]
"""


@pytest.fixture(scope="module")
def recorder() -> Iterator[redis.Redis]:
    """A Redis of the test's own (no chaos touches it), which the functions write
    to: one list entry per execution. Not the platform's Redis: workers have no
    access to it, by design."""
    kubectl("apply", "-f", "-", stdin=RECORDER_MANIFEST)
    kubectl("wait", "--for=condition=Ready", f"pod/{RECORDER}", "--timeout=180s")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    forward = subprocess.Popen(
        [kubectl_binary(), "-n", NAMESPACE, "port-forward", f"pod/{RECORDER}", f"{port}:6379"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    try:
        assert eventually(answers, 30, every_s=0.2), "the recorder's port-forward never answered"
        yield client
    finally:
        client.close()
        forward.terminate()
        forward.wait(10)
        kubectl("delete", "pod,service", RECORDER, "--wait=false", check=False)


def make_task(host: str, key: str) -> Callable[[int], int]:
    """The function under chaos: records each execution (pod, pid), works, returns i.
    A closure, so the SDK pickles it by value with host and key inside."""

    def chaos_task(i: int) -> int:
        import os
        import socket
        import time

        import redis

        with redis.Redis(host=host, port=6379, socket_timeout=10) as r:
            r.rpush(key, f"{i} {socket.gethostname()} {os.getpid()}")
        time.sleep(TASK_S)
        return i

    return chaos_task


def submit(http: httpx.Client, function_id: str, i: int) -> str:
    body = {
        "function_id": function_id,
        "payload": dumps(((i,), {})),
        "idempotency_key": f"chaos-{RUN}-{i}",
        "max_attempts": 10,
    }
    for _ in range(240):
        try:
            response = http.post("/execute_function", json=body)
            if response.status_code == 201:
                return response.json()["task_id"]
        except httpx.HTTPError:
            pass
        time.sleep(0.5)  # the gateway or Redis is restarting: try again, same key
    raise AssertionError(f"task {i} could not be submitted for two minutes")


def wait_all(http: httpx.Client, task_ids: list[str], timeout_s: float) -> dict[str, dict]:
    views: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    while len(views) < len(task_ids) and time.monotonic() < deadline:
        pending = [t for t in task_ids if t not in views]
        try:
            for start in range(0, len(pending), 500):
                answer = http.post(
                    "/v1/tasks/wait", json={"task_ids": pending[start : start + 500], "wait": 20}
                )
                for view in answer.json()["tasks"]:
                    if view["status"] in ("COMPLETED", "FAILED"):
                        views[view["task_id"]] = view
        except (httpx.HTTPError, ValueError, KeyError):
            time.sleep(1)  # the gateway or Redis is restarting
    return views


def test_tasks_survive_deleting_pods_of_every_component_until_all_ended(
    client: Client, recorder: redis.Redis
) -> None:
    rng = random.Random(RUN)
    components = ["gateway", "dispatcher", "redis"] + (["worker"] if mode() != "local" else [])
    key = f"chaos:{RUN}"
    task = client.register(make_task(f"{RECORDER}.{NAMESPACE}.svc", key), name="chaos")
    chaos = PodChaos(
        list_pods=pods,
        delete_pod=lambda name: kubectl("delete", "pod", name, "--wait=false", check=False),
        components=components,
        rng=rng,
    )
    all_ended = threading.Event()
    thread = threading.Thread(target=chaos.run, args=(all_ended,), daemon=True)
    thread.start()
    task_ids: dict[str, int] = {}
    started = time.monotonic()
    try:
        with httpx.Client(base_url=URL, timeout=30) as http:
            # Submit while the rounds go on: every component dies with tasks in flight
            while not chaos.wait_for_rounds(ROUNDS, timeout_s=0) and len(task_ids) < 20_000:
                i = len(task_ids)
                task_ids[submit(http, task.id, i)] = i
                all_ended.wait(0.1)  # pace: about 10 submits (5 task-seconds) a second
            submitted_s = time.monotonic() - started
            # Pods keep dying until the last task has ended
            views = wait_all(http, list(task_ids), timeout_s=900)
    finally:
        all_ended.set()
        thread.join(200)
    executions = collections.Counter(
        int(entry.split()[0]) for entry in (e.decode() for e in recorder.lrange(key, 0, -1))
    )
    completed = sum(1 for v in views.values() if v["status"] == "COMPLETED")
    failed = [v for v in views.values() if v["status"] == "FAILED"]
    lost = len(task_ids) - len(views)
    repeated = sum(n - 1 for n in executions.values() if n > 1)
    never_ran = [i for i in task_ids.values() if executions[i] == 0]
    print(
        f"\nchaos report ({time.monotonic() - started:.0f} s, submits for {submitted_s:.0f} s):\n"
        f"pods deleted {len(chaos.strikes)}, by component:\n{chaos.report()}\n"
        f"tasks submitted {len(task_ids)}, completed {completed}, failed {len(failed)}, "
        f"lost {lost}\nexecutions {sum(executions.values())}, repeated {repeated} "
        f"({sum(1 for n in executions.values() if n > 1)} tasks ran more than once), "
        f"re-queued attempts {sum(v['attempt'] - 1 for v in views.values())}"
    )
    # The chaos really happened, to every component, and each came back
    for component in components:
        assert chaos.count(component) >= ROUNDS, f"{component} deleted {chaos.count(component)}x"
        for strike in (s for s in chaos.strikes if s.component == component):
            if component != "worker":  # the controller may have scaled workers down meanwhile
                assert strike.recovered_after is not None, f"{strike.pod} never came back"
    # And no task was lost, failed, wrong or unrecorded
    assert lost == 0 and not failed, failed[:3]
    assert all(unwrap(views[t]) == i for t, i in task_ids.items())
    assert not never_ran, f"{len(never_ran)} completed tasks have no recorded execution"
