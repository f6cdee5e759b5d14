"""The platform through the ingress: the course contract and the SDK."""

from __future__ import annotations

import codecs
import uuid
from collections.abc import Callable

import dill
import httpx

from faas import Client
from faas.client import pickle_function
from tests.e2e.conftest import URL


def serialize(obj: object) -> str:
    """The course's helper: fine for arguments and values."""
    return codecs.encode(dill.dumps(obj), "base64").decode()


def serialize_function(fn: Callable[..., object]) -> str:
    """A function defined in this module travels by value (the SDK's way): dill would
    pickle it with a reference to this module's globals, and the workers cannot
    import tests.e2e.test_api (tests/e2e/test_harness.py checks both)."""
    return codecs.encode(pickle_function(fn), "base64").decode()


def double(x: int) -> int:
    return x * 2


def deserialize(text: str) -> object:
    return dill.loads(codecs.decode(text.encode(), "base64"))


def test_course_contract_through_the_ingress() -> None:
    with httpx.Client(base_url=URL, timeout=60) as http:
        assert (
            http.post("/register_function", json={"name": "x", "payload": "payload"}).status_code
            == 400
        )
        fid = http.post(
            "/register_function", json={"name": "double", "payload": serialize_function(double)}
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
