"""The Celery app of `python -m bench --baselines celery`: the worker imports it with
`-A bench.baselines.celery_app`, the side's client to send tasks. Celery's defaults
(JSON messages: kombu sends bytes as base64, as our JSON form does) but for what the
bench must fix: where Redis is, and no retry loop at start hiding a broker that is
down (the side waits for Redis first)."""

from __future__ import annotations

import os

from celery import Celery

from bench import workloads

URL = os.environ.get("BENCH_CELERY_REDIS", "redis://127.0.0.1:6379")

app = Celery("bench", broker=f"{URL}/0", backend=f"{URL}/1")
app.conf.update(
    broker_connection_retry_on_startup=False,
    worker_hijack_root_logger=False,
)

noop = app.task(name="bench.noop")(workloads.noop)
identity = app.task(name="bench.identity")(workloads.identity)
echo = app.task(name="bench.echo")(workloads.echo)
