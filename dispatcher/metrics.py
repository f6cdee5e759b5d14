"""The dispatcher's Prometheus metrics (served on FAAS_METRICS_PORT)."""

from prometheus_client import Counter, Gauge, Histogram

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

STARTED = Counter("faas_tasks_started_total", "Attempts sent to a worker", ["function"])
ENDED = Counter(
    "faas_tasks_ended_total",
    "Attempts whose outcome was committed, by outcome (ok, error, dependency, deadline, "
    "too_large, function_missing)",
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
