"""The SDK and the CLI, as a user drives them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from faas import (
    ApiError,
    Client,
    FaasClientError,
    GatewayUnreachable,
    ResultTimeout,
    WorkerFailure,
)
from faas.platform import LocalPlatform, free_port


@pytest.fixture(scope="module")
def client(platform: LocalPlatform):  # type: ignore[no-untyped-def]
    with Client(platform.url) as c:
        yield c


class Unhappy(Exception):
    pass


def test_call_a_registered_lambda_like_a_local_function(client: Client) -> None:
    factor = 3
    triple = client.register(lambda x, plus=0: x * factor + plus, name="triple")
    assert triple(5) == 15
    assert triple(5, plus=1) == 16


def test_submit_then_wait_for_the_result(client: Client) -> None:
    square = client.register(lambda x: x * x)
    task = square.submit(9)
    assert task.result(timeout=30) == 81
    assert task.done()
    assert client.task(task.id).info()["status"] == "COMPLETED"


def test_the_remote_exception_is_raised_with_its_traceback(client: Client) -> None:
    def fails(message):  # type: ignore[no-untyped-def]
        raise Unhappy(message)

    fn = client.register(fails)
    with pytest.raises(Unhappy, match="sad") as caught:
        fn("sad")
    assert any("remote traceback" in note for note in caught.value.__notes__)


def test_a_deadline_raises_worker_failure(client: Client) -> None:
    import time

    slow = client.register(lambda: time.sleep(30)).options(deadline_s=0.5)
    with pytest.raises(WorkerFailure, match="exceeded deadline") as caught:
        slow()
    assert caught.value.kind == "deadline"


def test_result_timeout_when_the_caller_stops_waiting(client: Client) -> None:
    import time

    task = client.register(lambda: time.sleep(3)).submit()
    with pytest.raises(ResultTimeout):
        task.result(timeout=0.2)
    assert task.result(timeout=30) is None


def test_map_runs_many_inputs_in_order(client: Client) -> None:
    add = client.register(lambda a, b: a + b)
    assert add.map(range(300), range(300), progress=False) == [2 * i for i in range(300)]


def test_map_can_return_exceptions_in_place(client: Client) -> None:
    inverse = client.register(lambda x: 1 / x)
    results = inverse.map([1, 0, 2], progress=False, return_exceptions=True)
    assert results[0] == 1 and results[2] == 0.5
    assert isinstance(results[1], ZeroDivisionError)


def test_api_errors_carry_status_and_detail(client: Client) -> None:
    with pytest.raises(ApiError) as caught:
        client.function("00000000-0000-4000-8000-000000000000")
    assert caught.value.status_code == 404


def test_an_unreachable_gateway_raises_one_clear_error() -> None:
    port = free_port()  # nothing listens there
    unreachable = Client(f"127.0.0.1:{port}")  # no scheme: http:// is meant
    with unreachable, pytest.raises(GatewayUnreachable) as caught:
        unreachable.functions()
    message = str(caught.value)
    assert f"http://127.0.0.1:{port}" in message and "faas up" in message
    assert "\n" not in message and caught.value.__cause__ is None  # no transport traceback
    assert caught.value.url == f"http://127.0.0.1:{port}"


def test_a_url_without_scheme_means_http(platform: LocalPlatform) -> None:
    with Client(platform.url.removeprefix("http://")) as client:
        assert isinstance(client.functions(), list)
    with pytest.raises(FaasClientError, match="not a gateway URL"):
        Client("ftp://127.0.0.1:1")


def test_the_cli_registers_calls_and_reads_results(platform: LocalPlatform, tmp_path: Path) -> None:
    source = tmp_path / "mathfns.py"
    source.write_text("def power(base, exp=2):\n    return base ** exp\n")

    def faas(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "faas.cli", "--url", platform.url, *args],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return done.stdout.strip()

    function_id = faas("register", f"{source}:power")
    assert faas("call", function_id, "3", "exp=3") == "27"
    task_id = faas("submit", function_id, "4")
    assert faas("result", task_id) == "16"
    assert faas("status", task_id) == "COMPLETED"
    assert function_id in faas("functions")


def test_large_arguments_and_results_round_trip_sync_and_async(client: Client) -> None:
    """The SDK sends raw pickles and reads raw results (the binary form of /v1/tasks)."""
    import base64
    import os
    import pickle

    echo = client.register(lambda value: value, name="echo-large")
    blob = os.urandom(3 * 2**20)  # far over the 64 KiB a completion message carries
    assert echo(blob) == blob
    task = echo.submit(blob)
    assert task.result(timeout=60) == blob
    view = task.info()  # the public view keeps its JSON shape: base64 text
    assert view["status"] == "COMPLETED" and pickle.loads(base64.b64decode(view["result"])) == blob
