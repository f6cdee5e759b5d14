"""A worker's Prometheus metrics (served on FAAS_METRICS_PORT)."""

from prometheus_client import Counter, Gauge

TASKS = Counter("faas_worker_tasks_total", "Attempts this worker ran, by outcome", ["outcome"])
SLOT_REPLACEMENTS = Counter(
    "faas_slot_replacements_total",
    "Slot processes replaced, by reason (lost, deadline, recycled)",
    ["reason"],
)
SLOTS_BUSY = Gauge("faas_worker_slots_busy", "Slots running a task")
OUTPUT_BYTES = Counter("faas_worker_output_bytes_total", "Task output read from slots")
