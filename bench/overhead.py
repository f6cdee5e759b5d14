"""`python -m bench.overhead`: the CPU cost of output capture and metrics per task,
measured piece by piece in one process, so the figures hold on a noisy machine where
end-to-end runs (`python -m bench --observability N`) cannot resolve a few percent.

Per task the platform adds: the gateway's timing middleware (one histogram
observation per request); the dispatcher's counters and two histogram observations;
in the worker, a non-blocking read of the slot's empty output pipe at the result,
the per-attempt bookkeeping, a counter and a gauge per loop step. A task that prints
adds its chunk: one LOG message and one APPEND in the dispatcher's next write.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable

from common.metrics import function_label
from dispatcher import metrics as dispatcher_metrics
from gateway.metrics import MetricsMiddleware
from worker import metrics as worker_metrics
from worker.output import OutputBuffers

N = 200_000


def per_call_us(fn: Callable[[], object], n: int = N) -> float:
    for _ in range(1000):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def gateway_middleware_us() -> float:
    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 200})

    async def send(message):  # type: ignore[no-untyped-def]
        pass

    scope = {"type": "http", "method": "GET", "path": "/x"}
    wrapped = MetricsMiddleware(app)

    async def run(target, n: int) -> float:  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        for _ in range(n):
            await target(dict(scope), None, send)
        return (time.perf_counter() - start) / n * 1e6

    async def both() -> float:
        await run(wrapped, 1000)
        return await run(wrapped, N // 4) - await run(app, N // 4)

    return asyncio.run(both())


def dispatcher_us() -> float:
    def one_task() -> None:
        f = function_label("f")
        dispatcher_metrics.STARTED.labels(f).inc()
        dispatcher_metrics.DISPATCH_LATENCY.observe(0.001)
        dispatcher_metrics.RUN_TIME.observe(0.001)
        dispatcher_metrics.ENDED.labels(f, "ok").inc()

    return per_call_us(one_task)


def worker_us() -> float:
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    buffers = OutputBuffers(lambda *_: None)

    def one_task() -> None:
        try:
            os.read(read_end, 65536)  # the drain at the result: nothing there
        except BlockingIOError:
            pass
        buffers.flush_due(0.0)
        buffers.finish("t", 1)
        worker_metrics.TASKS.labels("ok").inc()
        worker_metrics.SLOTS_BUSY.set(1)

    try:
        return per_call_us(one_task)
    finally:
        os.close(read_end)
        os.close(write_end)


def printing_task_us() -> float:
    """The worker's share for a task that prints one line (the LOG message excluded)."""
    sent: list[bytes] = []
    buffers = OutputBuffers(lambda _t, _a, data: sent.append(data))

    def one_task() -> None:
        buffers.add("t", 1, b"one line of output\n")
        buffers.finish("t", 1)
        sent.clear()

    return per_call_us(one_task)


def main() -> None:
    figures = {
        "gateway_middleware_us_per_request": round(gateway_middleware_us(), 2),
        "dispatcher_metrics_us_per_task": round(dispatcher_us(), 2),
        "worker_capture_and_metrics_us_per_task": round(worker_us(), 2),
        "worker_output_of_one_line_us": round(printing_task_us(), 2),
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
