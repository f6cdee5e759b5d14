"""Ray's side of `python -m bench --baselines ray` (bench/side.py's protocol).

A single-node Ray started with `ray start --head --block` (so that every port it opens
is ours to choose, which `ray.init()` alone does not allow), with `--num-cpus` as many
as the platform's slots, no dashboard and a small object store; this process is its
driver (`ray.init(address=...)`), as a user's program would be. On stdin's end, the
driver disconnects and the head is stopped with SIGINT (its own clean shutdown).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench import workloads
from bench.baselines import throughput, timed_s
from bench.side import serve

ENV = {
    # Loopback only: a one-machine cluster (Linux otherwise announces its outward address).
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # On a loaded 2-core machine the dashboard agent takes over 30 s (Ray's default wait)
    # to start, and the raylet then aborts.
    "RAY_agent_register_timeout_ms": "180000",
    "RAY_raylet_start_wait_time_s": "180",
    "RAY_USAGE_STATS_ENABLED": "0",
}
OBJECT_STORE_BYTES = 200 * 2**20


def head_argv(cpus: int, ports: dict[str, Any], temp_dir: str) -> list[str]:
    argv = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
            "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus),
            "--include-dashboard", "false", "--object-store-memory", str(OBJECT_STORE_BYTES),
            "--temp-dir", temp_dir, "--disable-usage-stats"]  # fmt: skip
    flags = {"gcs": "--port", "object_manager": "--object-manager-port",
             "node_manager": "--node-manager-port",
             "agent_listen": "--dashboard-agent-listen-port",
             "agent_grpc": "--dashboard-agent-grpc-port",
             "runtime_env_agent": "--runtime-env-agent-port",
             "metrics_export": "--metrics-export-port",
             "dashboard": "--dashboard-port"}  # fmt: skip
    for key, flag in flags.items():
        if key in ports:
            argv += [flag, str(ports[key])]
    if "workers" in ports:
        low, high = ports["workers"]
        argv += ["--min-worker-port", str(low), "--max-worker-port", str(high)]
    return argv


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def connect(head: subprocess.Popen[bytes], ports: dict[str, Any], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not (_listening(ports["gcs"]) and _listening(ports["node_manager"])):
        if head.poll() is not None:
            raise RuntimeError(f"`ray start` exited with {head.returncode} (see its log above)")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Ray did not start in {timeout_s:.0f} s")
        time.sleep(0.5)
    import ray

    while True:  # the ports listen before the node has registered: retry until it has
        try:
            ray.init(address=f"127.0.0.1:{ports['gcs']}", _node_ip_address="127.0.0.1",
                     log_to_driver=False, logging_level="warning")  # fmt: skip
            return
        except ConnectionError:
            ray.shutdown()
            if head.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(1)


def _log_tails(temp_dir: str) -> None:
    """Why Ray did not start is in its session's logs, removed with its directory."""
    for name in ("raylet.out", "gcs_server.out", "dashboard_agent.log", "raylet.err"):
        for path in Path(temp_dir).glob(f"session_*/logs/{name}"):
            lines = path.read_text(errors="replace").splitlines()
            print(f"--- {name} (last lines)", *lines[-15:], sep="\n", file=sys.stderr)


def handlers() -> dict[str, Any]:
    import ray
    import ray.cloudpickle

    # The bench package is not installed on Ray's workers' path: ship the functions by value.
    ray.cloudpickle.register_pickle_by_value(workloads)
    noop, identity, echo = (ray.remote(f) for f in (workloads.noop, workloads.identity,
                                                    workloads.echo))  # fmt: skip
    blob = os.urandom(2**20)

    def w1(n: int) -> list[float]:
        return timed_s(lambda: ray.get(noop.remote()), n)

    def w2(n: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        values = ray.get([identity.remote(i) for i in range(n)])
        return throughput(n, time.perf_counter() - t0, values)

    def w4(n: int) -> list[float]:
        samples = timed_s(lambda: ray.get(echo.remote(blob)), n)
        assert ray.get(echo.remote(blob)) == blob
        return samples

    return {"w1": w1, "w2": w2, "w4": w4}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines.ray_side")
    parser.add_argument("--cpus", type=int, required=True)
    parser.add_argument("--ports", type=json.loads, required=True, help="JSON: name -> port")
    parser.add_argument("--start-timeout-s", type=float, default=300)
    args = parser.parse_args()
    os.environ.update(ENV)  # the head's processes and this driver: before Ray is imported
    # Short: Ray's unix socket paths under it must stay within 107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="bench-ray-")
    head = subprocess.Popen(head_argv(args.cpus, args.ports, temp_dir), stdout=sys.stderr,
                            stderr=sys.stderr, stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        try:
            connect(head, args.ports, args.start_timeout_s)
        except Exception:
            _log_tails(temp_dir)
            raise
        serve(handlers(), ready={"version": version("ray"), "cpus": args.cpus})
    finally:
        if "ray" in sys.modules:
            with contextlib.suppress(Exception):
                sys.modules["ray"].shutdown()
        head.send_signal(signal.SIGINT)
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
