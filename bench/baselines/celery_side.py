"""Celery's side of `python -m bench --baselines celery` (bench/side.py's protocol).

A redis-server (persisted as the platform's own: AOF, fsync every second) as broker
(db 0) and result backend (db 1), and a prefork worker with as many processes as the
platform has slots, without gossip, mingle and heartbeats (the usual advice for a Redis
broker: less background traffic). This process is the client, as a user's program.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.baselines import throughput, timed_s
from bench.checkout import ROOT
from bench.side import serve
from faas.platform import redis_server_binary


def start_redis(port: int, data_dir: str) -> subprocess.Popen[bytes]:
    argv = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
            "--dir", data_dir, "--appendonly", "yes", "--appendfsync", "everysec",
            "--save", "", "--daemonize", "no"]  # fmt: skip
    return subprocess.Popen(argv, stdout=sys.stderr, stderr=sys.stderr, stdin=subprocess.DEVNULL)


def start_worker(concurrency: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "celery", "-A", "bench.baselines.celery_app", "worker",
            "--pool", "prefork", "--concurrency", str(concurrency), "--without-gossip",
            "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=sys.stderr, stderr=sys.stderr,
                            stdin=subprocess.DEVNULL)  # fmt: skip


def handlers() -> dict[str, Any]:
    from celery import group

    from bench.baselines.celery_app import echo, identity, noop

    blob = os.urandom(2**20)

    def w1(n: int) -> list[float]:
        return timed_s(lambda: noop.delay().get(timeout=60), n)

    def w2(n: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        values = group(identity.s(i) for i in range(n)).apply_async().get(timeout=600)
        return throughput(n, time.perf_counter() - t0, values)

    def w4(n: int) -> list[float]:
        samples = timed_s(lambda: echo.delay(blob).get(timeout=60), n)
        assert echo.delay(blob).get(timeout=60) == blob
        return samples

    return {"w1": w1, "w2": w2, "w4": w4}


def wait_for_redis(redis: subprocess.Popen[bytes], port: int) -> None:
    import redis as redis_py

    client = redis_py.Redis(port=port)
    for _ in range(300):
        if redis.poll() is not None:
            raise RuntimeError(f"redis-server exited with {redis.returncode}")
        try:
            client.ping()
            return
        except redis_py.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError("redis-server did not answer in 30 s")


def wait_ready(worker: subprocess.Popen[bytes], timeout_s: float) -> None:
    from bench.baselines.celery_app import noop

    result = noop.delay()
    deadline = time.monotonic() + timeout_s
    while not result.ready():
        if worker.poll() is not None:
            raise RuntimeError(f"the celery worker exited with {worker.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the celery worker did not answer in {timeout_s:.0f} s")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines.celery_side")
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--redis-port", type=int, required=True)
    parser.add_argument("--start-timeout-s", type=float, default=300)
    args = parser.parse_args()
    os.environ["BENCH_CELERY_REDIS"] = f"redis://127.0.0.1:{args.redis_port}"
    data_dir = tempfile.mkdtemp(prefix="bench-celery-")
    redis = start_redis(args.redis_port, data_dir)
    worker = None
    try:
        wait_for_redis(redis, args.redis_port)
        worker = start_worker(args.concurrency)
        wait_ready(worker, args.start_timeout_s)
        import celery

        serve(handlers(), ready={"version": celery.__version__, "concurrency": args.concurrency})
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        redis.terminate()
        redis.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
