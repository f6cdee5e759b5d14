"""`python -m worker --mode pull|push -n SLOTS tcp://HOST:PORT` (also `faas-worker`).
Every option also reads a FAAS_* environment variable; the command line wins.
SIGTERM drains: no new work, running tasks may finish for FAAS_DRAIN_TIMEOUT_S."""

from __future__ import annotations

import argparse
import faulthandler
import signal
import threading
import time

from common import metrics
from common.hardening import protect_process
from common.health import HealthServer
from common.logs import configure_logging
from common.memory import keep_freed_memory
from common.models import DispatchMode
from worker.loop import WorkerLoop
from worker.settings import WorkerSettings


def parse_settings(argv: list[str] | None) -> WorkerSettings:
    parser = argparse.ArgumentParser(prog="faas-worker", description="Run tasks for a dispatcher.")
    parser.add_argument("dispatcher_url", nargs="?", help="e.g. tcp://127.0.0.1:5556")
    parser.add_argument("--mode", choices=[DispatchMode.PULL.value, DispatchMode.PUSH.value])
    parser.add_argument("-n", "--slots", type=int, help="tasks run at once (default 4)")
    parser.add_argument(
        "--prefetch",
        type=int,
        metavar="N",
        help="tasks held beyond free slots (default: as many as slots; 0: none)",
    )
    parser.add_argument("--id", dest="worker_id", help="unique worker id (default host-pid)")
    args = parser.parse_args(argv)
    return WorkerSettings(**{k: v for k, v in vars(args).items() if v is not None})


def main(argv: list[str] | None = None) -> None:
    settings = parse_settings(argv)
    configure_logging(settings.log_level, json_lines=settings.log_json)
    protect_process()  # user code must not read our environment from /proc
    keep_freed_memory()
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 prints every thread's stack
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    loop = WorkerLoop(settings)
    metrics.serve(settings.metrics_port)
    if settings.health_port:
        HealthServer(
            settings.health_port,
            live=lambda: time.monotonic() - loop.last_tick < 10,
            ready=lambda: loop.connected and not loop.draining,
        ).start()
    loop.run(stop)


if __name__ == "__main__":
    main()
