"""The platform through the ingress: the course contract and the SDK."""

from __future__ import annotations

import codecs
import uuid

import dill
import httpx

from faas import Client
from tests.e2e.conftest import URL


def serialize(obj: object) -> str:
    return codecs.encode(dill.dumps(obj), "base64").decode()


def deserialize(text: str) -> object:
    return dill.loads(codecs.decode(text.encode(), "base64"))


def test_course_contract_through_the_ingress() -> None:
    with httpx.Client(base_url=URL, timeout=60) as http:
        assert (
            http.post("/register_function", json={"name": "x", "payload": "payload"}).status_code
            == 400
        )
        fid = http.post(
            "/register_function", json={"name": "double", "payload": serialize(lambda x: x * 2)}
        ).json()["function_id"]
        created = http.post(
            "/execute_function", json={"function_id": fid, "payload": serialize(((21,), {}))}
        )
        assert created.status_code == 201
        task_id = created.json()["task_id"]
        assert http.get(f"/status/{task_id}").json()["status"] in {
            "QUEUED",
            "RUNNING",
            "COMPLETED",
            "FAILED",
        }
        result = http.get(f"/result/{task_id}", params={"wait": 30}).json()
        assert result["status"] == "COMPLETED" and deserialize(result["result"]) == 42
        assert http.get(f"/status/{uuid.uuid4()}").status_code == 404
        assert http.get("/status/not-an-id").status_code == 400


def test_sdk_call_map_and_remote_exception(client: Client) -> None:
    square = client.register(lambda x: x * x)
    assert square(12) == 144
    assert square.map(range(200), progress=False) == [i * i for i in range(200)]
    broken = client.register(lambda: 1 / 0)
    try:
        broken()
    except ZeroDivisionError:
        pass
    else:
        raise AssertionError("the remote ZeroDivisionError was not raised")
