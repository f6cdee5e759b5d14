"""The course-compatible contract, and what users build on it, against the real
platform in every dispatch mode."""

from __future__ import annotations

import uuid

import cloudpickle
import httpx
import numpy as np
import userfuncs

from tests.conftest import deserialize, execute, register, serialize, wait_result

STATUSES = {"QUEUED", "RUNNING", "COMPLETED", "FAILED"}


def test_register_returns_201_and_a_function_id(http: httpx.Client) -> None:
    response = http.post(
        "/register_function", json={"name": "double", "payload": serialize(userfuncs.double)}
    )
    assert response.status_code == 201
    assert uuid.UUID(response.json()["function_id"])


def test_register_rejects_an_invalid_payload_with_400(http: httpx.Client) -> None:
    response = http.post("/register_function", json={"name": "hello", "payload": "payload"})
    assert response.status_code == 400
    assert "base64" in response.json()["detail"]


def test_execute_returns_201_and_status_is_valid_at_once(http: httpx.Client) -> None:
    function_id = register(http, userfuncs.double)
    response = http.post(
        "/execute_function", json={"function_id": function_id, "payload": serialize(((2,), {}))}
    )
    assert response.status_code == 201
    task_id = response.json()["task_id"]
    status = http.get(f"/status/{task_id}")
    assert status.status_code == 200
    assert status.json() == {"task_id": task_id, "status": status.json()["status"]}
    assert status.json()["status"] in STATUSES


def test_roundtrip_of_a_dill_module_level_function(http: httpx.Client) -> None:
    function_id = register(http, userfuncs.double)
    for number in (0, 7, 123456):
        body = wait_result(http, execute(http, function_id, number))
        assert body["status"] == "COMPLETED"
        assert deserialize(body["result"]) == number * 2


def test_result_answers_200_with_the_status_at_every_stage(http: httpx.Client) -> None:
    function_id = register(http, userfuncs.nap)
    task_id = execute(http, function_id, 0.3)
    early = http.get(f"/result/{task_id}")
    assert early.status_code == 200
    assert early.json()["task_id"] == task_id
    assert early.json()["status"] in {"QUEUED", "RUNNING"}
    assert early.json()["result"] is None
    assert deserialize(wait_result(http, task_id)["result"]) == 0.3


def test_positional_and_keyword_arguments(http: httpx.Client) -> None:
    function_id = register(http, userfuncs.add)
    body = wait_result(http, execute(http, function_id, 1, 2, 3, scale=10))
    assert deserialize(body["result"]) == 60


def test_a_cloudpickled_lambda_with_a_closure(http: httpx.Client) -> None:
    offset = 5
    payload = codecs_b64(cloudpickle.dumps(lambda x: x + offset))
    response = http.post("/register_function", json={"name": "lambda", "payload": payload})
    assert response.status_code == 201
    body = wait_result(http, execute(http, response.json()["function_id"], 10))
    assert deserialize(body["result"]) == 15


def codecs_b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def test_a_function_using_numpy(http: httpx.Client) -> None:
    function_id = register(http, userfuncs.matmul)
    body = wait_result(http, execute(http, function_id, 4))
    expected = np.arange(16, dtype=float).reshape(4, 4)
    assert np.array_equal(deserialize(body["result"]), expected @ expected)


def test_a_one_megabyte_argument_comes_back_intact(http: httpx.Client) -> None:
    blob = bytes(range(256)) * 4096
    function_id = register(http, userfuncs.echo)
    body = wait_result(http, execute(http, function_id, blob))
    assert body["status"] == "COMPLETED"
    assert deserialize(body["result"]) == blob


def test_a_user_exception_fails_the_task_with_the_exception_as_result(http: httpx.Client) -> None:
    function_id = register(http, userfuncs.boom)
    body = wait_result(http, execute(http, function_id, 42))
    assert body["status"] == "FAILED"
    error = deserialize(body["result"])
    assert isinstance(error, userfuncs.Rejected)
    assert (error.code, error.reason) == (42, "no")
    task = http.get(f"/v1/tasks/{body['task_id']}").json()
    assert task["error_kind"] == "user"
    assert task["attempt"] == 1, "a user error is not retried"
    assert "Rejected" in task["error"]


def test_a_task_over_its_deadline_fails_and_frees_its_slot(http: httpx.Client) -> None:
    function_id = register(http, userfuncs.nap)
    body = {"function_id": function_id, "payload": serialize(((30,), {})), "deadline_s": 0.5}
    task_id = http.post("/execute_function", json=body).json()["task_id"]
    result = wait_result(http, task_id, timeout_s=10)
    assert result["status"] == "FAILED"
    error = deserialize(result["result"])
    assert isinstance(error, TimeoutError)
    assert "exceeded deadline" in str(error)
    view = http.get(f"/v1/tasks/{task_id}").json()
    assert view["error_kind"] == "deadline"
    assert view["finished_at_ms"] - view["started_at_ms"] < 5000
    # The slot was replaced: the platform still runs work.
    assert (
        deserialize(wait_result(http, execute(http, register(http, userfuncs.double), 4))["result"])
        == 8
    )


def test_unknown_ids_answer_404(http: httpx.Client) -> None:
    unknown = str(uuid.uuid4())
    assert http.get(f"/status/{unknown}").status_code == 404
    assert http.get(f"/result/{unknown}").status_code == 404
    response = http.post(
        "/execute_function", json={"function_id": unknown, "payload": serialize(((), {}))}
    )
    assert response.status_code == 404
    assert unknown in response.json()["detail"]


def test_malformed_ids_answer_400_with_a_message(http: httpx.Client) -> None:
    for path in ("/status/not-a-uuid", "/result/123", "/v1/tasks/%20"):
        response = http.get(path)
        assert response.status_code == 400, path
        assert "UUID" in response.json()["detail"]
    response = http.post(
        "/execute_function", json={"function_id": "x", "payload": serialize(((), {}))}
    )
    assert response.status_code == 400


def test_results_can_be_read_twice(http: httpx.Client) -> None:
    task_id = execute(http, register(http, userfuncs.double), 21)
    first = wait_result(http, task_id)
    second = http.get(f"/result/{task_id}").json()
    assert first == second
    assert deserialize(second["result"]) == 42


def test_long_poll_answers_when_the_task_ends_not_at_the_timeout(http: httpx.Client) -> None:
    task_id = execute(http, register(http, userfuncs.nap), 0.2)
    response = http.get(f"/result/{task_id}", params={"wait": 20})
    assert response.json()["status"] == "COMPLETED"
    assert response.elapsed.total_seconds() < 5


def test_synchronous_call_in_one_request(http: httpx.Client) -> None:
    function_id = register(http, userfuncs.add)
    body = {"function_id": function_id, "payload": serialize(((2, 3), {}))}
    response = http.post("/v1/tasks", params={"wait": 10}, json=body)
    assert response.status_code == 201
    assert response.json()["status"] == "COMPLETED"
    assert deserialize(response.json()["result"]) == 5


def test_batch_submit_and_batch_wait(http: httpx.Client) -> None:
    function_id = register(http, userfuncs.double)
    payloads = [serialize(((i,), {})) for i in range(50)]
    response = http.post("/v1/tasks/batch", json={"function_id": function_id, "payloads": payloads})
    assert response.status_code == 201
    task_ids = response.json()["task_ids"]
    assert len(set(task_ids)) == 50
    views = http.post("/v1/tasks/wait", json={"task_ids": task_ids, "wait": 30}).json()["tasks"]
    assert [deserialize(v["result"]) for v in views] == [i * 2 for i in range(50)]


def test_an_idempotency_key_returns_the_first_task(http: httpx.Client) -> None:
    function_id = register(http, userfuncs.double)
    body = {
        "function_id": function_id,
        "payload": serialize(((1,), {})),
        "idempotency_key": str(uuid.uuid4()),
    }
    first = http.post("/execute_function", json=body).json()["task_id"]
    second = http.post("/execute_function", json=body).json()["task_id"]
    assert first == second


def test_task_view_records_timestamps_attempts_and_worker(http: httpx.Client) -> None:
    task_id = execute(http, register(http, userfuncs.double), 1)
    wait_result(http, task_id)
    view = http.get(f"/v1/tasks/{task_id}").json()
    assert view["queued_at_ms"] <= view["started_at_ms"] <= view["finished_at_ms"]
    assert view["attempt"] == 1
    assert view["worker_id"]


def test_functions_can_be_listed_read_and_deleted(http: httpx.Client) -> None:
    function_id = register(http, userfuncs.double, name="to-delete")
    assert http.get(f"/v1/functions/{function_id}").json()["name"] == "to-delete"
    assert function_id in {f["function_id"] for f in http.get("/v1/functions").json()}
    assert http.delete(f"/v1/functions/{function_id}").status_code == 204
    assert http.get(f"/v1/functions/{function_id}").status_code == 404
    response = http.post(
        "/execute_function", json={"function_id": function_id, "payload": serialize(((1,), {}))}
    )
    assert response.status_code == 404


def test_health_and_openapi(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json() == {"status": "ready"}
    paths = http.get("/openapi.json").json()["paths"]
    assert {
        "/register_function",
        "/execute_function",
        "/status/{task_id}",
        "/result/{task_id}",
    } <= set(paths)
