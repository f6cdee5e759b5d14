"""The controller's Prometheus metrics (served on FAAS_METRICS_PORT)."""

from prometheus_client import Counter, Gauge

REPLICAS = Gauge("faas_pool_replicas", "Worker pods of a WorkerPool's Deployment", ["pool"])
DESIRED = Gauge("faas_pool_desired_replicas", "Worker pods the scaler asks for", ["pool"])
QUEUE_READS_FAILED = Counter(
    "faas_controller_queue_unreadable_total", "Reconciliations that could not read the queue"
)
LOST_REPORTS = Counter("faas_controller_lost_worker_reports_total", "Worker pods reported lost")
