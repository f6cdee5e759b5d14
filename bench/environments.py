"""`python -m bench --environments ROUNDS`: what a function's environment costs.

One platform with an offline wheelhouse (tiny wheels made as tests/wheelhouse.py makes
them: no network). Each round registers a function with one requirement it has never
seen (a new version each round, so its environment is cold), times its first call
(install and first run), then alternates W1 (sequential submit-and-wait) between that
function and the same function with no environment, ABBA, so both see the same noise.
Reports the medians and the W1 p50 ratio, and the disk each environment uses (the
size the worker records at install, which eviction counts)."""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import time
from pathlib import Path
from typing import Any

import cloudpickle

from bench import workloads
from bench.http import SyncJSON
from common.models import DispatchMode, FunctionEnv
from faas.client import pickle_function
from faas.platform import LocalPlatform, PlatformConfig, free_port
from tests.wheelhouse import make_wheel
from worker.environments import Environments, EnvSpec, Ready
from worker.pool import Job
from worker.prepare import Prepared, Preparer

PACKAGE = "faas_benchpkg"
MARKER = ".faas-env-complete"


def _register(http: SyncJSON, requirements: list[str]) -> str:
    body = {
        "name": "noop",
        "payload": base64.b64encode(pickle_function(workloads.noop)).decode(),
        "requirements": requirements,
    }
    status, created = http.request("POST", "/v1/functions", body)
    assert status == 201, created
    return created["function_id"]


def _call(http: SyncJSON, fid: str) -> float:
    body = {"function_id": fid, "payload": base64.b64encode(cloudpickle.dumps(((), {}))).decode()}
    t0 = time.perf_counter()
    status, view = http.request("POST", "/v1/tasks?wait=120", body)
    elapsed = time.perf_counter() - t0
    assert status == 201 and view["status"] == "COMPLETED", view
    return elapsed


def _w1_p50_ms(http: SyncJSON, fid: str, n: int) -> float:
    for _ in range(min(50, n)):
        _call(http, fid)
    return round(statistics.median(_call(http, fid) for _ in range(n)) * 1000, 3)


def compare_environments(
    mode: DispatchMode, args: argparse.Namespace, log_dir: Path
) -> dict[str, Any]:
    wheels, envs = log_dir / "wheels", log_dir / "envs"
    for r in range(args.environments):
        make_wheel(wheels, PACKAGE, f"{r + 1}.0")
    config = PlatformConfig(
        mode=mode, workers=args.workers, slots=args.slots, port=free_port(),
        data_dir=log_dir / f"data-envs-{mode.value}", log_dir=log_dir / f"envs-{mode.value}",
        gateway_workers=args.gateway_workers,
        env={"FAAS_ENV_DIR": str(envs), "FAAS_PIP_NO_INDEX": "true",
             "FAAS_PIP_FIND_LINKS": str(wheels)},
    )  # fmt: skip
    rounds: list[dict[str, float]] = []
    with LocalPlatform(config):
        http = SyncJSON("127.0.0.1", config.port)
        plain = _register(http, [])
        _w1_p50_ms(http, plain, 200)  # warm the slots, the gateway and the store
        for r in range(args.environments):
            with_env = _register(http, [f"{PACKAGE}=={r + 1}.0"])
            cold_s = _call(http, with_env)
            first_plain_s = _call(http, _register(http, []))  # a new function, no env
            p50 = {}
            for side in ("env", "none") if r % 2 == 0 else ("none", "env"):
                p50[side] = _w1_p50_ms(http, with_env if side == "env" else plain, args.w1)
            rounds.append({
                "cold_first_call_s": round(cold_s, 3),
                "first_call_no_env_s": round(first_plain_s, 3),
                "W1_p50_ms_env": p50["env"], "W1_p50_ms_none": p50["none"],
            })  # fmt: skip
            print(f"[{mode}] round {r + 1}: cold {cold_s:.3f} s, W1 p50 env {p50['env']} ms, "
                  f"none {p50['none']} ms", flush=True)  # fmt: skip
        http.close()
    worker_us = _worker_side_us(envs, wheels, f"{PACKAGE}==1.0")
    markers = [json.loads(m.read_text()) for m in envs.glob(f"*/*/{MARKER}")]
    sizes = [m["bytes"] for m in markers if m["requirements"]]  # not the empty one
    median = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    return {
        "rounds": rounds,
        "median": median,
        "W1_p50_env_over_none": round(median["W1_p50_ms_env"] / median["W1_p50_ms_none"], 3),
        # the ratio within each round, where both sides saw the same load
        "W1_p50_env_over_none_per_round": [
            round(r["W1_p50_ms_env"] / r["W1_p50_ms_none"], 3) for r in rounds
        ],
        "worker_prepare_us_per_call": worker_us,
        "disk_bytes_per_env": {"n": len(sizes), "median": statistics.median(sizes or [0])},
    }


def _worker_side_us(envs: Path, wheels: Path, requirement: str, n: int = 5000) -> dict[str, float]:
    """What the worker does per warm call before a slot runs it (`Preparer.prepare`, then
    `finished` at its end: pinning and unpinning the environment), with and without one;
    in this process, so machine load disturbs it less than the end-to-end figures."""
    environments = Environments(envs, find_links=[str(wheels)], no_index=True)
    preparer = Preparer(environments, fetch=lambda digest: None)
    out = {}
    for side, env in (("env", FunctionEnv((requirement,))), ("none", None)):
        job = Job("t", 1, "f", b"", b"", 60.0, env=env)
        assert isinstance(environments.wait(EnvSpec((requirement,)), 120), Ready)
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            assert isinstance(preparer.prepare(job), Prepared)
            preparer.finished(job)
            samples.append(time.perf_counter() - t0)
        out[side] = round(statistics.median(samples) * 1e6, 1)
    environments.close()
    return out
