"""Redis at its memory limit: submits answer 503 with Retry-After (not 500), nothing
half-accepted is left behind, and once memory is available again submits work and
every task accepted before, during and after completes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis
import userfuncs

from common.models import DispatchMode
from faas.platform import LocalPlatform
from tests.conftest import make_platform, register, serialize, wait_all


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    with make_platform(tmp_path_factory.mktemp("store-full"), DispatchMode.LOCAL) as running:
        yield running


def test_a_full_store_answers_503_with_retry_after_and_loses_nothing(
    platform: LocalPlatform,
) -> None:
    admin = redis.Redis.from_url(platform.redis_url)
    with httpx.Client(base_url=platform.url, timeout=60) as http:
        function_id = register(http, userfuncs.double)
        body = {"function_id": function_id, "payload": serialize(((1,), {}))}
        accepted = [http.post("/execute_function", json=body).json()["task_id"]]
        tasks_before = len(admin.keys("faas:task:*"))

        admin.config_set("maxmemory", "1")  # every write is now refused with OOM
        try:
            for path, request in (
                ("/execute_function", body),
                ("/v1/tasks", body),
                ("/v1/tasks/batch", {"function_id": function_id, "payloads": [body["payload"]]}),
                ("/register_function", {"name": "f", "payload": body["payload"]}),
            ):
                response = http.post(path, json=request)
                assert response.status_code == 503, (path, response.text)
                assert response.headers["retry-after"].isdigit()
                assert "full" in response.json()["detail"]
            # Reads still work, and nothing was half-written by the refused submits.
            assert http.get(f"/v1/tasks/{accepted[0]}").status_code == 200
            assert len(admin.keys("faas:task:*")) == tasks_before
        finally:
            admin.config_set("maxmemory", "0")

        for _ in range(20):
            response = http.post("/execute_function", json=body)
            assert response.status_code == 201, response.text
            accepted.append(response.json()["task_id"])
        views = wait_all(http, accepted)
        assert all(view["status"] == "COMPLETED" for view in views.values()), views
    admin.close()
