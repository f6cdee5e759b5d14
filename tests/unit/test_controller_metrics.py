"""The controller's metrics, scraped over HTTP from the endpoint `FAAS_METRICS_PORT`
opens (`common.metrics.serve`), after reconciliations with the queue unreadable."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from common import metrics
from faas.platform import free_port
from tests.unit.test_controller_logic import reconcile_with_redis_down


def samples(port: int) -> dict[tuple[str, frozenset], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_reconciliations_show_on_the_metrics_port() -> None:
    port = free_port()
    metrics.serve(port)
    before = samples(port).get(("faas_controller_queue_unreadable_total", frozenset()), 0.0)
    reconcile_with_redis_down(7)  # clamped from 7 to the pool's max of 4
    after = samples(port)
    assert after[("faas_controller_queue_unreadable_total", frozenset())] == before + 1
    assert after[("faas_pool_replicas", frozenset({("pool", "pool")}))] == 7
    assert after[("faas_pool_desired_replicas", frozenset({("pool", "pool")}))] == 4


def test_a_port_in_use_costs_the_endpoint_not_the_process() -> None:
    port = free_port()
    metrics.serve(port)
    metrics.serve(port)  # logs a warning, raises nothing
