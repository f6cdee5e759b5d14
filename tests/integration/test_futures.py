"""Futures as arguments on the real platform (see `faas.futures`): a task submitted
with tasks among its arguments waits, holding no slot, until they complete, then
runs with their results in their places; a failed dependency fails it
(dependency_failed); a WAITING task can be cancelled; `faas.then` works inside a
slot too. One slot in all, so a waiting task that held it would deadlock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import userfuncs

import faas
from common.models import DispatchMode
from faas import Client, Task, WorkerFailure
from faas.platform import LocalPlatform
from tests.conftest import make_platform


@pytest.fixture(scope="module", params=[DispatchMode.LOCAL, DispatchMode.PULL],
                ids=lambda m: m.value)  # fmt: skip
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Client]:
    tmp = tmp_path_factory.mktemp(f"futures-{request.param.value}")
    platform: LocalPlatform
    with (
        make_platform(tmp, request.param, workers=1, slots=1) as platform,
        Client(platform.url) as c,
    ):
        yield c


def until_status(task: Task, status: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while (now := task.status()) != status:
        assert time.monotonic() < deadline, f"task {task.id} still {now}, not {status}"
        time.sleep(0.02)


@pytest.fixture
def blocker(client: Client, tmp_path: Path) -> Iterator[Path]:
    """The one slot held until the test creates the returned file."""
    release = tmp_path / "release"
    held = client.register(userfuncs.hold).submit(str(release))
    until_status(held, "RUNNING")
    yield release
    release.touch()
    held.wait(timeout=20)


def test_a_fan_in_of_ten_waits_without_holding_the_slot(client: Client, blocker: Path) -> None:
    double = client.register(userfuncs.double)
    total = client.register(lambda *xs: sum(xs))
    inputs = [double.submit(i) for i in range(10)]
    summed = total.submit(*inputs)  # accepted while no input has run
    assert summed.status() == "WAITING"
    assert {t.status() for t in inputs} == {"QUEUED"}
    listed = {t["task_id"]: t["status"] for t in client.tasks(limit=20)}
    assert listed[summed.id] == "WAITING"
    blocker.touch()
    assert summed.result(timeout=60) == sum(2 * i for i in range(10))


def test_futures_anywhere_in_the_arguments(client: Client) -> None:
    double, echo = client.register(userfuncs.double), client.register(userfuncs.echo)
    a, b = double.submit(1), double.submit(2)
    assert echo.submit([a, {"b": b}, 7]).result(timeout=30) == [2, {"b": 4}, 7]
    add = client.register(userfuncs.add)
    assert faas.then(add, a, b, scale=b).result(timeout=30) == (2 + 4) * 4


def test_a_dependency_finished_at_submit_time_counts_as_done(client: Client) -> None:
    double = client.register(userfuncs.double)
    first = double.submit(3)
    assert first.result(timeout=30) == 6
    assert double.submit(first).result(timeout=30) == 12


def test_a_failed_dependency_fails_the_dependent_and_its_dependents(client: Client) -> None:
    double, add = client.register(userfuncs.double), client.register(userfuncs.add)
    failing = client.register(userfuncs.boom).submit(1)
    dependent = add.submit(failing, double.submit(2))
    second = double.submit(dependent)
    for task in (dependent, second):
        with pytest.raises(WorkerFailure) as caught:
            task.result(timeout=30)
        assert caught.value.kind == "dependency_failed"
    assert f"dependency {failing.id} ended FAILED" in dependent.info()["error"]
    assert f"dependency {dependent.id} ended FAILED" in second.info()["error"]


def test_cancelling_a_waiting_task(client: Client, blocker: Path) -> None:
    double = client.register(userfuncs.double)
    first = double.submit(1)
    waiting = double.submit(first)
    assert waiting.status() == "WAITING"
    assert waiting.cancel()["status"] == "CANCELLED"
    blocker.touch()
    assert first.result(timeout=30) == 2
    assert waiting.status() == "CANCELLED"
    with pytest.raises(faas.TaskCancelled):
        waiting.result(timeout=5)


def test_then_inside_a_slot(client: Client) -> None:
    double = client.register(userfuncs.double)
    total = client.register(lambda *xs: sum(xs))

    def fan_in(n: int) -> int:
        import faas

        parts = [double.submit(i) for i in range(n)]
        return faas.then(total, *parts).result()

    assert client.register(fan_in)(5) == sum(2 * i for i in range(5))


def test_tasks_as_arguments_of_map_are_refused_clearly(client: Client) -> None:
    double = client.register(userfuncs.double)
    first = double.submit(1)
    with pytest.raises(TypeError, match="go to submit"):
        double.map([first])
