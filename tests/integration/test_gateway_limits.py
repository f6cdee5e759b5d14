"""Request bodies and options at and over their limits: a clear 4xx, never a 400
for a 413, never a coerced value."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import userfuncs

from faas.platform import LocalPlatform
from tests.conftest import register, serialize, wait_result

GOOD = serialize(((1,), {}))


@pytest.fixture(scope="module")
def http(gateway: LocalPlatform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=60) as client:
        yield client


def test_a_chunked_body_over_the_limit_is_413(http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:  # a generator: httpx sends it chunked, no length
        yield b'{"name": "f", "payload": "'
        for _ in range(65):
            yield b"A" * 2**20
        yield b'"}'

    response = http.post(
        "/register_function", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert "larger than" in response.json()["detail"]


@pytest.mark.parametrize(
    "options",
    [
        {"max_attempts": "3"},
        {"max_attempts": True},
        {"max_attempts": 2.0},
        {"deadline_s": True},
        {"deadline_s": "5"},
        {"deadline_s": 0.0005},
    ],
    ids=lambda options: "-".join(f"{k}={v!r}" for k, v in options.items()),
)
def test_loosely_typed_or_sub_millisecond_options_are_refused(
    http: httpx.Client, options: dict
) -> None:
    function_id = register(http, userfuncs.double)
    for path in ("/execute_function", "/v1/tasks"):
        body = {"function_id": function_id, "payload": GOOD, **options}
        response = http.post(path, json=body)
        assert response.status_code == 422, (path, response.text)
        assert next(iter(options)) in response.json()["detail"]


def test_a_one_millisecond_deadline_is_kept_as_one_millisecond(http: httpx.Client) -> None:
    function_id = register(http, userfuncs.double)
    body = {"function_id": function_id, "payload": GOOD, "deadline_s": 0.001, "max_attempts": 1}
    view = http.post("/v1/tasks", json=body).json()
    assert view["deadline_s"] == 0.001
    wait_result(http, view["task_id"])  # it ends, one way or the other
