"""Prometheus metrics: the HTTP endpoint of the processes that serve no HTTP of
their own (dispatcher, workers, controller), and the bound on label values.

Each component declares its metrics in its own `metrics.py` on prometheus-client's
default registry. `FAAS_METRICS_PORT` (0: off) opens `/metrics` on that port; the
endpoint shows aggregates only (counts, durations, function ids), never task ids,
arguments or output.
"""

from __future__ import annotations

import logging
import threading

from prometheus_client import start_http_server

logger = logging.getLogger(__name__)

MAX_FUNCTION_LABELS = 100
"""Distinct function ids a process labels its metrics with; later ones count as
"other", so the number of series stays bounded however many functions exist."""

_seen: set[str] = set()
_lock = threading.Lock()


def function_label(function_id: str) -> str:
    with _lock:
        if function_id in _seen:
            return function_id
        if len(_seen) < MAX_FUNCTION_LABELS:
            _seen.add(function_id)
            return function_id
    return "other"


def serve(port: int) -> None:
    """Serve /metrics on `port` in a daemon thread (nothing if 0)."""
    if not port:
        return
    try:
        start_http_server(port)
    except OSError as exc:  # metrics are not worth failing the process for
        logger.warning("no metrics endpoint: port %d: %s", port, exc)
        return
    logger.info("metrics endpoint on :%d (/metrics)", port)
