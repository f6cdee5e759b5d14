"""The app's own Redis: a redis-server of its own on its own port, never the
platform's (user code must not reach the platform's store)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from faas.platform import Process, free_port, redis_server_binary


@contextlib.contextmanager
def app_redis(data_dir: Path, port: int = 0) -> Iterator[str]:
    """Start a redis-server for the app's data (in memory: the example keeps no
    data across runs) and yield its URL; stopped on exit."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    argv = [
        redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
        "--save", "", "--appendonly", "no", "--daemonize", "no",
    ]  # fmt: skip
    server = Process("app-redis", argv, {}, data_dir).start()
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_until_answering(url, server, timeout_s=15)
        yield url
    finally:
        server.stop(timeout_s=5)


def _wait_until_answering(url: str, server: Process, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with redis.Redis.from_url(url, socket_connect_timeout=0.5) as db:
        while time.monotonic() < deadline:
            if not server.alive():
                raise RuntimeError(f"the app's redis-server exited ({server.returncode})")
            with contextlib.suppress(redis.ConnectionError):
                if db.ping():
                    return
            time.sleep(0.05)
    raise RuntimeError(f"the app's redis-server did not answer within {timeout_s} s")
