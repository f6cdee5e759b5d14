"""Prometheus metrics with real processes: after tasks ran (one of them failing,
one killed at its deadline), each component's /metrics shows counters that moved."""

from __future__ import annotations

from pathlib import Path

import httpx
import printfuncs
import pytest
import userfuncs
from prometheus_client.parser import text_string_to_metric_families

from common.models import DispatchMode
from faas.platform import LocalPlatform
from tests.conftest import execute, make_platform, register, serialize, wait_all


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page, by (name, sorted labels)."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(
        value
        for (n, ls), value in samples.items()
        if n == name and all(dict(ls).get(k) == v for k, v in labels.items())
    )


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("metrics")
    with make_platform(tmp, DispatchMode.PULL, workers=1, slots=2, metrics=True) as running:
        yield running


def test_each_component_counts_what_it_did(platform: LocalPlatform) -> None:
    with httpx.Client(base_url=platform.url, timeout=60) as http:
        chatty = register(http, printfuncs.chatty)
        ids = [execute(http, chatty, 2) for _ in range(5)]
        ids.append(execute(http, register(http, userfuncs.boom), 3))
        body = {"function_id": register(http, userfuncs.nap),
                "payload": serialize(((5,), {})),
                "deadline_s": 0.5}  # fmt: skip
        ids.append(http.post("/v1/tasks", json=body).json()["task_id"])
        wait_all(http, ids)
        http.get("/v1/tasks/nonsense!")  # a 400 on a templated route

    gateway = scrape(platform.url + "/metrics")
    assert total(gateway, "faas_tasks_submitted_total") >= 7
    route = "/v1/tasks/{task_id}"
    assert (
        total(gateway, "faas_http_request_duration_seconds_count", route=route, status="400") >= 1
    )
    assert total(gateway, "faas_http_request_duration_seconds_count", route="/execute_function",
                 method="POST", status="201") >= 6  # fmt: skip
    assert not any("nonsense" in str(key) for key in gateway), "raw paths must not be labels"

    ports = platform.metrics_ports
    dispatcher = scrape(f"http://127.0.0.1:{ports['dispatcher']}/metrics")
    assert total(dispatcher, "faas_tasks_started_total", function=chatty) == 5
    assert total(dispatcher, "faas_tasks_ended_total", function=chatty, outcome="ok") == 5
    assert total(dispatcher, "faas_tasks_ended_total", outcome="error") == 1
    assert total(dispatcher, "faas_tasks_ended_total", outcome="deadline") == 1
    assert total(dispatcher, "faas_dispatch_latency_seconds_count") >= 7
    assert total(dispatcher, "faas_run_seconds_count") >= 7
    assert total(dispatcher, "faas_workers") == 1
    assert total(dispatcher, "faas_task_log_bytes_total") > 0

    worker = scrape(f"http://127.0.0.1:{ports['worker-0']}/metrics")
    assert total(worker, "faas_worker_tasks_total", outcome="ok") == 5
    assert total(worker, "faas_slot_replacements_total", reason="deadline") == 1
    assert total(worker, "faas_worker_output_bytes_total") > 0


def test_the_gateways_metrics_need_no_api_key(tmp_path: Path) -> None:
    with make_platform(tmp_path, env={"FAAS_API_KEY": "k" * 32}) as platform:
        assert httpx.get(platform.url + "/v1/functions").status_code == 401
        assert httpx.get(platform.url + "/metrics").status_code == 200


def test_in_local_mode_the_dispatcher_exports_its_worker_loops_series(tmp_path: Path) -> None:
    with (
        make_platform(tmp_path, DispatchMode.LOCAL, slots=1, metrics=True) as local,
        httpx.Client(base_url=local.url, timeout=60) as http,
    ):
        wait_all(http, [execute(http, register(http, printfuncs.chatty), 1) for _ in range(2)])
        dispatcher = scrape(f"http://127.0.0.1:{local.metrics_ports['dispatcher']}/metrics")
    assert total(dispatcher, "faas_worker_tasks_total", outcome="ok") == 2
    assert total(dispatcher, "faas_worker_output_bytes_total") > 0
    assert total(dispatcher, "faas_tasks_ended_total", outcome="ok") == 2
