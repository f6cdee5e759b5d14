"""`python -m dispatcher -m local|pull|push -p PORT -w SLOTS` (also `faas-dispatcher`).
Every option also reads a FAAS_* environment variable; the command line wins."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import signal
import sys
import time

from common import metrics
from common.hardening import protect_process
from common.health import HealthServer
from common.logs import configure_logging
from common.memory import keep_freed_memory
from common.models import DispatchMode
from common.store import Store
from dispatcher.core import Dispatcher, LeaseLost
from dispatcher.settings import DispatcherSettings


def parse_settings(argv: list[str] | None) -> DispatcherSettings:
    parser = argparse.ArgumentParser(
        prog="faas-dispatcher", description="Run queued tasks on local slots or ZeroMQ workers."
    )
    parser.add_argument(
        "-m",
        "--mode",
        choices=[m.value for m in DispatchMode],
        help="local (own slot processes), pull or push (remote workers)",
    )
    parser.add_argument(
        "-p",
        "--port",
        type=int,
        dest="dispatcher_port",
        help="ROUTER port for workers (pull/push; default 5556)",
    )
    parser.add_argument(
        "-w", "--workers", type=int, dest="slots", help="slot processes in local mode (default 4)"
    )
    parser.add_argument("--redis-url", help="default redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)  # fmt: skip
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    return DispatcherSettings(**overrides)


async def serve(settings: DispatcherSettings) -> None:
    store = Store.from_url(
        settings.redis_url, prefix=settings.key_prefix, result_ttl_s=settings.result_ttl_s
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    dispatcher = Dispatcher(settings, store)
    metrics.serve(settings.metrics_port)
    health = None
    if settings.health_port:
        health = HealthServer(
            settings.health_port,
            live=lambda: time.monotonic() - dispatcher.last_tick < 10,
            ready=lambda: dispatcher.active,
        ).start()
    try:
        await dispatcher.run(stop)
    finally:
        if health is not None:
            health.stop()
        await store.close()


def main(argv: list[str] | None = None) -> None:
    settings = parse_settings(argv)
    configure_logging(settings.log_level, json_lines=settings.log_json)
    protect_process()  # user code must not read our environment from /proc
    keep_freed_memory()
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 prints every thread's stack
    run = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        run = uvloop.run
    try:
        run(serve(settings))
    except LeaseLost as exc:
        sys.exit(f"stopping: {exc}")


if __name__ == "__main__":
    main()
