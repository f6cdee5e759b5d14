"""Retention through the platform (gateway, dispatcher, worker, real redis-server):
what a finished no-op task keeps, measured over every key it leaves; result_ttl_s per
task (JSON, binary, batch, SDK) and per function, with bounds; expire_after_read."""

from __future__ import annotations

import base64
import pickle
import time
from collections.abc import Iterator
from typing import Any

import cloudpickle
import httpx
import pytest
import redis
import userfuncs

from bench.retention import measure
from common.models import MAX_RESULT_TTL_S
from faas.client import Client
from faas.platform import LocalPlatform
from tests.conftest import register, serialize

OCTET = "application/octet-stream"
EXPIRE_AFTER_READ_S = 60  # the gateway's default


@pytest.fixture(scope="module")
def http(gateway: LocalPlatform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def admin(gateway: LocalPlatform) -> redis.Redis:
    return redis.Redis.from_url(gateway.redis_url)


def test_a_retained_noop_task_takes_at_most_250_bytes(gateway: LocalPlatform) -> None:
    """Every key under the prefix counts (found by SCAN), so a key a task leaves that
    nobody thought of counts too. Runs first: later tests leave keys that expire."""
    figures = measure(gateway, 400)
    assert figures["bytes_per_task"] <= 250, figures
    # Its hash; the rest is shared. A shared key may appear once in the window (it made
    # 401 keys for 400 tasks once, in a full run): a key per task would make it 2.
    assert 1 <= figures["keys_per_task"] <= 1.01, figures
    assert figures["task_hash"]["encoding"] == "listpack", figures
    assert figures["task_hash"]["fields"] == ["h", "r", "w"], figures


def ttl(admin: redis.Redis, task_id: str) -> int:
    return int(admin.ttl(f"faas:task:{task_id}"))


def v1_register(http: httpx.Client, fn: Any, **options: Any) -> httpx.Response:
    payload = base64.b64encode(cloudpickle.dumps(fn)).decode()
    return http.post("/v1/functions", json={"name": "f", "payload": payload, **options})


def call(http: httpx.Client, function_id: str, **options: Any) -> dict[str, Any]:
    body = {"function_id": function_id, "payload": serialize(((1, 2), {})), **options}
    answer = http.post("/v1/tasks", params={"wait": 30}, json=body)
    assert answer.status_code == 201, answer.text
    view: dict[str, Any] = answer.json()
    assert view["status"] == "COMPLETED", view
    return view


def test_result_ttl_per_task_else_per_function_else_the_setting(
    http: httpx.Client, admin: redis.Redis, gateway: LocalPlatform
) -> None:
    plain = register(http, userfuncs.add)
    answer = v1_register(http, userfuncs.add, result_ttl_s=5000)
    assert answer.status_code == 201, answer.text
    kept = answer.json()["function_id"]
    assert 86_390 < ttl(admin, call(http, plain)["task_id"]) <= 86_400
    assert 4990 < ttl(admin, call(http, kept)["task_id"]) <= 5000
    assert 290 < ttl(admin, call(http, kept, result_ttl_s=300)["task_id"]) <= 300
    # the binary form takes it as a query parameter, batches in the body
    binary = http.post(
        "/v1/tasks", params={"function_id": plain, "wait": 30, "result_ttl_s": 400},
        content=pickle.dumps(((1, 2), {})), headers={"content-type": OCTET, "accept": OCTET},
    )  # fmt: skip
    assert binary.status_code == 201 and pickle.loads(binary.content) == 3
    assert 390 < ttl(admin, binary.headers["x-faas-task-id"]) <= 400
    batch = http.post("/v1/tasks/batch", json={
        "function_id": plain, "payloads": [serialize(((1, 2), {}))] * 2, "result_ttl_s": 600,
    })  # fmt: skip
    ids = batch.json()["task_ids"]
    assert http.post("/v1/tasks/wait", json={"task_ids": ids, "wait": 30}).status_code == 200
    assert all(590 < ttl(admin, t) <= 600 for t in ids)
    # the SDK's options, and the view is the same as ever
    with Client(gateway.url) as client:
        fn = client.function(plain).options(result_ttl_s=700)
        task = fn.run(1, 2)
        assert task.result(timeout=30) == 3
        assert 690 < ttl(admin, task.id) <= 700
        assert "result_ttl_s" not in task.info()


@pytest.mark.parametrize("bad", [0, -1, MAX_RESULT_TTL_S + 1, "60", 1.5])
def test_a_result_ttl_out_of_bounds_is_refused(http: httpx.Client, bad: Any) -> None:
    function_id = register(http, userfuncs.add)
    payload = serialize(((1, 2), {}))
    for path, body in (
        ("/v1/tasks", {"function_id": function_id, "payload": payload}),
        ("/v1/tasks/batch", {"function_id": function_id, "payloads": [payload]}),
    ):
        answer = http.post(path, json={**body, "result_ttl_s": bad})
        assert answer.status_code == 422 and "result_ttl_s" in answer.text, answer.text
    answer = v1_register(http, userfuncs.add, result_ttl_s=bad)
    assert answer.status_code == 422 and "result_ttl_s" in answer.text, answer.text
    if bad != "60":  # query parameters are text: "60" is 60 there
        answer = http.post(
            "/v1/tasks", params={"function_id": function_id, "result_ttl_s": bad},
            content=pickle.dumps(((1, 2), {})), headers={"content-type": OCTET},
        )  # fmt: skip
        assert answer.status_code == 422 and "result_ttl_s" in answer.text, answer.text


def test_a_task_that_asked_is_kept_a_minute_once_its_result_was_read(
    http: httpx.Client, admin: redis.Redis, gateway: LocalPlatform
) -> None:
    function_id = register(http, userfuncs.add)
    # a synchronous call answers with the result: read
    assert ttl(admin, call(http, function_id, expire_after_read=True)["task_id"]) <= 60
    # asked but not yet read: a status carries no result; then /result does
    body = {"function_id": function_id, "payload": serialize(((1, 2), {})),
            "expire_after_read": True}  # fmt: skip
    task_id = http.post("/execute_function", json=body).json()["task_id"]
    waited = http.post("/v1/tasks/wait", json={"task_ids": [task_id], "wait": 30}).json()
    assert waited["tasks"][0]["status"] == "COMPLETED"
    assert ttl(admin, task_id) <= EXPIRE_AFTER_READ_S, "POST /v1/tasks/wait carries results"
    other = http.post("/execute_function", json=body).json()["task_id"]
    wait_ended(http, other)
    assert ttl(admin, other) > 86_000, "a status carries no result"
    assert http.get(f"/result/{other}").json()["status"] == "COMPLETED"
    assert 0 < ttl(admin, other) <= EXPIRE_AFTER_READ_S
    # a function may ask for all its tasks; a task may say otherwise
    answer = v1_register(http, userfuncs.add, expire_after_read=True)
    asking = answer.json()["function_id"]
    assert ttl(admin, call(http, asking)["task_id"]) <= EXPIRE_AFTER_READ_S
    assert ttl(admin, call(http, asking, expire_after_read=False)["task_id"]) > 86_000
    # the SDK's option; GET /v1/tasks/{id} (binary) is a read
    napping = register(http, userfuncs.nap)  # not ended yet when the submit answers
    with Client(gateway.url) as client:
        task = client.function(napping).options(expire_after_read=True).submit(0.2)
        wait_ended(http, task.id)
        assert ttl(admin, task.id) > 86_000
        assert task.result(timeout=30) == 0.2
        assert ttl(admin, task.id) <= EXPIRE_AFTER_READ_S


def wait_ended(http: httpx.Client, task_id: str) -> None:
    """Until the task ended, reading only its status (no result leaves)."""
    for _ in range(300):
        if http.get(f"/status/{task_id}").json()["status"] in ("COMPLETED", "FAILED"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{task_id} did not end")
