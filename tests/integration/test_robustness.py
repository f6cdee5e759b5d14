"""Bad input gets a clear 4xx, never a 500 or a hang, and the service stays healthy."""

from __future__ import annotations

import base64
import pickle

import httpx
import pytest
import userfuncs

from tests.conftest import register, serialize, wait_result

GOOD = serialize(((1,), {}))


def _truncated() -> str:
    return base64.b64encode(pickle.dumps({"a": list(range(100))})[:-7]).decode()


def _trailing() -> str:
    return base64.b64encode(pickle.dumps(1) + b"junk").decode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("payload", "base64"),
        ("", "empty"),
        ("!!!!", "base64"),
        ("aGVsbG8gd29ybGQ=", "pickle"),  # "hello world": base64, not a pickle
        (_truncated(), "pickle"),
        (_trailing(), "trailing"),
        (base64.b64encode(b"\x80\x09K\x01.").decode(), "protocol"),
    ],
    ids=["word", "empty", "not-base64", "not-pickle", "truncated", "trailing", "protocol-9"],
)
def test_bad_payloads_are_400_with_a_reason(http: httpx.Client, payload: str, reason: str) -> None:
    for body in (
        {"name": "f", "payload": payload},
        {"function_id": register(http, userfuncs.double), "payload": payload},
    ):
        path = "/register_function" if "name" in body else "/execute_function"
        response = http.post(path, json=body)
        assert response.status_code == 400, (path, response.text)
        assert reason in response.json()["detail"]


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        b'{"name": 5, "payload": []}',
        b'{"payload": "x"}',
        b'{"name": "f", "payload": "x", "extra": 1}',
    ],
    ids=["malformed", "array", "wrong-types", "missing-field", "unknown-field"],
)
def test_malformed_requests_are_422_with_a_message(http: httpx.Client, content: bytes) -> None:
    response = http.post(
        "/register_function", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"]


def test_wrong_option_values_are_422(http: httpx.Client) -> None:
    function_id = register(http, userfuncs.double)
    for options in ({"deadline_s": -1}, {"max_attempts": 0}, {"deadline_s": "soon"}):
        response = http.post(
            "/execute_function", json={"function_id": function_id, "payload": GOOD, **options}
        )
        assert response.status_code == 422, options
    response = http.get("/result/00000000-0000-4000-8000-000000000000", params={"wait": "forever"})
    assert response.status_code == 422


def test_an_oversized_body_is_413(http: httpx.Client, platform) -> None:  # type: ignore[no-untyped-def]
    big = "A" * (65 * 2**20)
    response = http.post(
        "/register_function", content=f'{{"name": "f", "payload": "{big}"}}'.encode()
    )
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]


def test_an_oversized_payload_is_400(http: httpx.Client) -> None:
    payload = base64.b64encode(pickle.dumps(b"x" * (17 * 2**20))).decode()
    response = http.post("/register_function", json={"name": "f", "payload": payload})
    assert response.status_code == 400
    assert "larger than" in response.json()["detail"]


def test_an_arguments_payload_of_the_wrong_shape_fails_the_task_clearly(http: httpx.Client) -> None:
    function_id = register(http, userfuncs.double)
    body = {"function_id": function_id, "payload": serialize([1, 2, 3])}
    task_id = http.post("/execute_function", json=body).json()["task_id"]
    result = wait_result(http, task_id)
    assert result["status"] == "FAILED"
    view = http.get(f"/v1/tasks/{task_id}").json()
    assert "((args...), {kwargs})" in view["error"]


def test_the_service_is_healthy_after_all_that(http: httpx.Client) -> None:
    assert http.get("/readyz").status_code == 200
    task_id = http.post(
        "/execute_function", json={"function_id": register(http, userfuncs.double), "payload": GOOD}
    )
    assert wait_result(http, task_id.json()["task_id"])["status"] == "COMPLETED"
