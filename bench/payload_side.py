"""One side of `python -m bench.payloads`: run from a checkout's root as
`python -c <this file's text> N DIR`, so the platform and SDK measured are that
checkout's (the current directory comes first on sys.path). Prints one JSON line.

Self-contained on purpose: an older checkout has no module of this benchmark.
"""

import base64
import http.client
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cloudpickle

from faas.client import Client, pickle_function
from faas.platform import LocalPlatform, PlatformConfig, free_port

JSON = {"content-type": "application/json"}
BINARY = {"content-type": "application/octet-stream", "accept": "application/octet-stream"}


def noop():
    return None


def echo(value):
    return value


def cpu_s(platform):
    """CPU seconds used so far by the platform's processes (Redis too) and their
    descendants: far less disturbed than wall-clock time by other load on the machine."""
    parents, cpu = {}, {}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    procs = [platform.gateway, platform.redis, *platform.dispatchers, *platform.workers]
    roots = {p.popen.pid for p in procs if p is not None and p.popen is not None}
    total = 0.0
    for pid, used in cpu.items():
        ancestor = pid
        while ancestor > 1 and ancestor not in roots:
            ancestor = parents.get(ancestor, 0)
        if ancestor in roots:
            total += used
    return total


def measure(report, name, fn, n, platform):
    """p50 wall-clock ms of `fn` over n calls, and the platform's CPU ms per call."""
    for _ in range(3):
        fn()
    samples = []
    cpu0 = cpu_s(platform)
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    report[f"{name}_p50_ms"] = round(statistics.median(samples), 3)
    report[f"{name}_cpu_ms"] = round((cpu_s(platform) - cpu0) * 1000 / n, 3)


def main():
    n, data_dir = int(sys.argv[1]), Path(sys.argv[2])
    config = PlatformConfig(port=free_port(), data_dir=data_dir / "data", log_dir=data_dir / "logs")
    blob = os.urandom(2**20)
    with LocalPlatform(config) as platform:
        conn = http.client.HTTPConnection(config.host, config.port, timeout=120)

        def request(method, path, body=None, headers=None):
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.headers, response.read()

        def register(fn):
            text = base64.b64encode(pickle_function(fn)).decode()
            body = json.dumps({"name": fn.__name__, "payload": text})
            _, _, answer = request("POST", "/register_function", body, JSON)
            return json.loads(answer)["function_id"]

        def json_call(fid, args):
            text = base64.b64encode(cloudpickle.dumps((args, {}))).decode()
            body = json.dumps({"function_id": fid, "payload": text})
            status, _, answer = request("POST", "/v1/tasks?wait=30", body, JSON)
            assert status == 201 and json.loads(answer)["status"] == "COMPLETED", answer[:200]

        raw_echo = cloudpickle.dumps(((blob,), {}))

        def binary_call(fid):
            path = f"/v1/tasks?function_id={fid}&wait=30"
            status, head, answer = request("POST", path, raw_echo, BINARY)
            assert status == 201 and head["x-faas-status"] == "COMPLETED", (status, answer[:200])
            assert len(answer) > len(blob)

        noop_id, echo_id = register(noop), register(echo)
        report = {}
        measure(report, "W1", lambda: json_call(noop_id, ()), n * 5, platform)
        measure(report, "W4_json", lambda: json_call(echo_id, (blob,)), n, platform)
        headers = {"content-type": "application/octet-stream"}
        status, _, _ = request("POST", f"/v1/tasks?function_id={echo_id}", raw_echo, headers)
        if status == 201:  # this checkout has the binary form
            measure(report, "W4_binary", lambda: binary_call(echo_id), n, platform)
        with Client(f"http://{config.host}:{config.port}") as client:
            remote, noop_fn = client.function(echo_id), client.function(noop_id)
            measure(report, "W4_sdk", lambda: remote(blob), n, platform)
            measure(report, "W1_sdk", lambda: noop_fn(), n * 5, platform)
        conn.close()
    print(json.dumps(report))


main()
