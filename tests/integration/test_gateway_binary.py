"""The binary form of /v1 tasks against a real platform: raw pickles in and out,
the task's fields in X-Faas-* headers, the JSON fallback for long errors, and the
same checks as the JSON form (400 for a bad pickle, 422 for bad options)."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from urllib.parse import unquote

import httpx
import pytest
import userfuncs

from common.store import Store
from faas.platform import LocalPlatform
from tests.conftest import deserialize, register, serialize

OCTET = "application/octet-stream"
BINARY = {"content-type": OCTET, "accept": OCTET}


@pytest.fixture(scope="module")
def http(gateway: LocalPlatform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=120) as client:
        yield client


def call(http: httpx.Client, function_id: str, *args: object, **params: object) -> httpx.Response:
    body = pickle.dumps((args, {}))
    return http.post("/v1/tasks", params={"function_id": function_id, **params},
                     content=body, headers=BINARY)  # fmt: skip


def test_a_synchronous_call_is_raw_pickles_both_ways(http: httpx.Client) -> None:
    function_id = register(http, userfuncs.add)
    answer = call(http, function_id, 2, 3, wait=30)
    assert answer.status_code == 201, answer.text
    assert answer.headers["content-type"] == OCTET
    assert pickle.loads(answer.content) == 5
    assert answer.headers["x-faas-status"] == "COMPLETED"
    assert answer.headers["x-faas-function-id"] == function_id
    assert answer.headers["x-faas-attempt"] == "1"
    assert "x-faas-error" not in answer.headers  # no value: no header
    # The JSON view of the same task says the same.
    view = http.get(f"/v1/tasks/{answer.headers['x-faas-task-id']}").json()
    assert view["status"] == "COMPLETED" and view["finished_at_ms"] == int(
        answer.headers["x-faas-finished-at-ms"]
    )


def test_submit_now_and_fetch_the_raw_result_later(http: httpx.Client) -> None:
    function_id = register(http, userfuncs.add)
    submitted = call(http, function_id, 20, 22, max_attempts=2, deadline_s="5.5")
    assert submitted.status_code == 201, submitted.text
    task_id = submitted.headers["x-faas-task-id"]
    assert submitted.headers["x-faas-max-attempts"] == "2"
    assert submitted.headers["x-faas-deadline-s"] == "5.5"
    answer = http.get(f"/v1/tasks/{task_id}", params={"wait": 30}, headers={"accept": OCTET})
    assert answer.headers["x-faas-status"] == "COMPLETED"
    assert pickle.loads(answer.content) == 42


def test_a_json_submit_may_ask_for_a_binary_answer(http: httpx.Client) -> None:
    function_id = register(http, userfuncs.add)
    body = {"function_id": function_id, "payload": serialize(((1, 1), {}))}
    answer = http.post("/v1/tasks?wait=30", json=body, headers={"accept": OCTET})
    assert answer.headers["content-type"] == OCTET
    assert pickle.loads(answer.content) == 2


def test_a_16_mib_payload_and_result_round_trip(http: httpx.Client) -> None:
    function_id = register(http, userfuncs.echo)
    blob = os.urandom(16 * 2**20 - 64)  # the pickle of the call stays within 16 MiB
    answer = call(http, function_id, blob, wait=60)
    assert answer.status_code == 201, answer.text[:300]
    assert pickle.loads(answer.content) == blob


def test_results_over_the_inline_limit_arrive_intact_in_both_forms(http: httpx.Client) -> None:
    function_id = register(http, userfuncs.echo)
    blob = os.urandom(Store.inline_result_bytes * 3)
    answer = call(http, function_id, blob, wait=30)
    assert pickle.loads(answer.content) == blob
    view = http.get(f"/v1/tasks/{answer.headers['x-faas-task-id']}").json()
    assert view["status"] == "COMPLETED"
    assert deserialize(view["result"]) == blob


def test_a_malformed_pickle_body_is_400(http: httpx.Client) -> None:
    function_id = register(http, userfuncs.add)
    for body, why in [(b"not a pickle", "pickle"), (b"", "empty"),
                      (pickle.dumps(((1, 2), {})) + b"junk", "trailing")]:  # fmt: skip
        answer = http.post("/v1/tasks", params={"function_id": function_id}, content=body,
                           headers=BINARY)  # fmt: skip
        assert answer.status_code == 400, answer.text
        assert why in answer.json()["detail"]


def test_bad_options_are_422_and_an_unknown_function_404(http: httpx.Client) -> None:
    function_id = register(http, userfuncs.add)
    body = pickle.dumps(((1, 2), {}))
    for params, where in [({"function_id": function_id, "max_attempts": "0"}, "max_attempts"),
                          ({"function_id": function_id, "deadline_s": "soon"}, "deadline_s"),
                          ({"function_id": function_id, "colour": "red"}, "colour"),
                          ({}, "function_id")]:  # fmt: skip
        answer = http.post("/v1/tasks", params=params, content=body, headers=BINARY)
        assert answer.status_code == 422, answer.text
        assert f"query.{where}" in answer.json()["detail"]
    unknown = "00000000-0000-4000-8000-000000000000"
    assert call(http, unknown, 1, 2).status_code == 404


def test_a_failure_travels_in_headers_and_a_long_error_falls_back_to_json(
    http: httpx.Client,
) -> None:
    function_id = register(http, userfuncs.boom)
    answer = call(http, function_id, "short message", wait=30)
    assert answer.headers["content-type"] == OCTET
    assert answer.headers["x-faas-status"] == "FAILED"
    assert answer.headers["x-faas-error-kind"] == "user"
    assert "short message" in unquote(answer.headers["x-faas-error"])
    assert isinstance(pickle.loads(answer.content), Exception)

    answer = call(http, function_id, "ü" * 5000, wait=30)  # over 4 KiB once encoded
    assert answer.headers["content-type"] == "application/json"
    view = answer.json()
    assert view["status"] == "FAILED" and "ü" * 5000 in view["error"]
