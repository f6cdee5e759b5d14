"""The dispatcher's Prometheus metrics (served on FAAS_METRICS_PORT)."""

import functools

from prometheus_client import Counter, Gauge, Histogram

from common.metrics import function_label

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

STARTED = Counter("faas_tasks_started_total", "Attempts sent to a worker", ["function"])
ENDED = Counter(
    "faas_tasks_ended_total",
    "Attempts whose outcome was committed, by outcome (ok, error, dependency, deadline, "
    "too_large, function_missing, arguments_lost)",
    ["function", "outcome"],
)
REQUEUED = Counter(
    "faas_attempts_requeued_total", "Lost attempts handed back, by verdict", ["verdict"]
)
QUEUED = Gauge("faas_queue_depth", "Attempts waiting in the queue (read every 2 s)")
RUNNING = Gauge("faas_tasks_running", "Attempts held by workers")
WORKERS = Gauge("faas_workers", "Workers registered with this dispatcher")
DISPATCH_LATENCY = Histogram(
    "faas_dispatch_latency_seconds", "From submit to sent to a worker", buckets=_SECONDS
)
RUN_TIME = Histogram(
    "faas_run_seconds", "From sent to a worker to its result received", buckets=_SECONDS
)
LOG_BYTES = Counter("faas_task_log_bytes_total", "Task output appended to the store")


# Per task, `labels()` (two locks and the label checks) cost more than the increment:
# the labelled children are looked up once per function and outcome.
@functools.lru_cache(maxsize=4096)
def started(function_id: str) -> Counter:
    return STARTED.labels(function_label(function_id))


@functools.lru_cache(maxsize=4096)
def ended(function_id: str, outcome: str) -> Counter:
    return ENDED.labels(function_label(function_id), outcome)
