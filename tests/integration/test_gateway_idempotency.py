"""An idempotency key is bound to its request: the same request again gets the same
task, a different one with the same key gets 409, never another request's task."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
import userfuncs

from faas.platform import LocalPlatform
from tests.conftest import register, serialize, wait_all, wait_result

GOOD = serialize(((1,), {}))


@pytest.fixture(scope="module")
def http(gateway: LocalPlatform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=60) as client:
        yield client


def test_an_idempotency_key_is_bound_to_its_request(http: httpx.Client) -> None:
    double = register(http, userfuncs.double)
    echo = register(http, userfuncs.echo)
    key = str(uuid.uuid4())
    first = {"function_id": double, "payload": GOOD, "idempotency_key": key}
    task_id = http.post("/execute_function", json=first).json()["task_id"]

    # The same request again, even with the payload's line breaks changed: the same task.
    again = {**first, "payload": GOOD.replace("\n", "")}
    assert http.post("/execute_function", json=again).json()["task_id"] == task_id
    assert http.post("/v1/tasks", json=first).json()["task_id"] == task_id

    for different in (
        {**first, "function_id": echo},
        {**first, "payload": serialize(((2,), {}))},
        {**first, "deadline_s": 7},
        {**first, "max_attempts": 1},
    ):
        for path in ("/execute_function", "/v1/tasks"):
            response = http.post(path, json=different)
            assert response.status_code == 409, (path, different, response.text)
            detail = response.json()["detail"]
            assert key in detail and "different request" in detail
    assert wait_result(http, task_id)["status"] == "COMPLETED"
    views = wait_all(http, [task_id])
    assert views[task_id]["function_id"] == double
