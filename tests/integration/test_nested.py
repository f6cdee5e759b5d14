"""Functions that call functions (see `faas.nested`), on the real platform: calls go
over the worker's link, parents that outnumber slots do not deadlock, a parent that
runs again finds its children, and runaway recursion stops at the depth cap."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.models import DispatchMode
from faas import Client, NestedCallError
from faas.platform import LocalPlatform
from tests.conftest import make_platform


@pytest.fixture(scope="module", params=[DispatchMode.LOCAL, DispatchMode.PULL, DispatchMode.PUSH],
                ids=lambda m: m.value)  # fmt: skip
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalPlatform]:
    """Four slots in all: 16 waiting parents outnumber them four to one."""
    tmp = tmp_path_factory.mktemp(f"nested-{request.param.value}")
    workers = 1 if request.param == DispatchMode.LOCAL else 2
    slots = 4 if request.param == DispatchMode.LOCAL else 2
    with make_platform(tmp, request.param, workers=workers, slots=slots) as p:
        yield p


@pytest.fixture(scope="module")
def client(platform: LocalPlatform) -> Iterator[Client]:
    with Client(platform.url) as c:
        yield c


def test_a_function_calls_another_inside_its_slot(client: Client) -> None:
    square = client.register(lambda x: x * x)
    total = client.register(lambda n: sum(square.map(range(n))))
    assert total(10) == sum(x * x for x in range(10))
    one = client.register(lambda x: square(x) + square.submit(x + 1).result())
    assert one(3) == 9 + 16


def test_more_waiting_parents_than_slots_do_not_deadlock(client: Client) -> None:
    """The regression test: 16 concurrent parents on 4 slots, each waiting on 3
    children, all complete."""

    def nap(x: int) -> int:
        import time

        time.sleep(0.05)
        return x

    child = client.register(nap)
    parent = client.register(lambda i: sum(child.map([i, i, i])))
    tasks = [parent.submit(i) for i in range(16)]
    assert [t.result(timeout=60) for t in tasks] == [3 * i for i in range(16)]


def test_more_parents_than_slots_and_spare_slots_together_complete(client: Client) -> None:
    """New parents do not take the spare slots their children need: 40 of them on 4
    slots (at most 16 spare ones) queue instead of failing for want of a slot."""
    child = client.register(lambda x: x)
    parent = client.register(lambda i: sum(child.map([i, i, i])))
    tasks = [parent.submit(i) for i in range(40)]
    assert [t.result(timeout=120) for t in tasks] == [3 * i for i in range(40)]


@pytest.mark.parametrize("inline", [False, True], ids=["task", "inline"])
def test_a_child_exception_reaches_the_parent(client: Client, inline: bool) -> None:
    def fails(x: int) -> int:
        raise KeyError(f"no {x}")

    child = client.register(fails).options(inline=inline)

    def catches(x: int) -> str:
        try:
            child(x)
        except KeyError as exc:
            return f"caught {exc}"
        return "not raised"

    assert client.register(catches)(7) == "caught 'no 7'"


def test_unknown_functions_and_runaway_recursion_fail_at_once(client: Client) -> None:
    from faas.client import RemoteFunction

    ghost = RemoteFunction(client, "00000000-0000-4000-8000-000000000000", "ghost")
    calls_ghost = client.register(lambda: ghost())
    with pytest.raises(NestedCallError, match="not found"):
        calls_ghost()

    recurse = client.register(lambda f, n: f(f, n + 1))  # calls itself, deeper each time
    started = time.monotonic()
    with pytest.raises(NestedCallError, match="deep"):
        recurse(recurse, 0)
    assert time.monotonic() - started < 30


def _child(marker_dir: str, i: int) -> int:
    import pathlib
    import uuid

    pathlib.Path(marker_dir, f"child-{i}-{uuid.uuid4().hex}").touch()  # one file per run
    return i


def test_calls_being_queued_are_not_reported_missing_by_the_sweep(tmp_path: Path) -> None:
    """The dispatcher's sweep of awaited tasks (every heartbeat interval, here 10 ms)
    must not read children before their CALL has queued them: else a wait would end
    with "not found" for a child that is about to run (it did, for a few of these)."""
    env = {"FAAS_HEARTBEAT_INTERVAL_S": "0.01"}
    with (
        make_platform(tmp_path, DispatchMode.LOCAL, workers=1, slots=4, env=env) as platform,
        Client(platform.url) as client,
    ):
        child = client.register(lambda x: x)
        parent = client.register(lambda i: sum(child.map([i] * 5)) + child.submit(i).result())
        tasks = [parent.submit(i) for i in range(60)]
        assert [t.result(timeout=120) for t in tasks] == [6 * i for i in range(60)]


def test_inline_calls_run_in_the_callers_slot_without_a_task(client: Client) -> None:
    def where(x: list[int]) -> tuple[int, list[int]]:
        import os

        x.append(1)  # on a copy: the caller's list stays as it was
        return os.getpid(), x

    child = client.register(where).options(inline=True)

    def parent(n: int) -> tuple[bool, list[int], list[tuple[int, list[int]]]]:
        import os

        mine = [0]
        pid, _ = child(mine)
        return pid == os.getpid(), mine, child.map([[i] for i in range(n)])

    same_process, untouched, mapped = client.register(parent)(3)
    assert same_process and untouched == [0]
    assert [x for _, x in mapped] == [[0, 1], [1, 1], [2, 1]]
    assert client.tasks(function_id=child.id) == []  # the inline calls made no task


def test_an_inline_call_to_a_function_that_is_gone_is_refused(client: Client) -> None:
    ghost = client.register(lambda: 1).options(inline=True)
    client.request("DELETE", f"/v1/functions/{ghost.id}")
    with pytest.raises(Exception, match="not found"):
        client.register(lambda: ghost())()


def test_a_parent_that_runs_again_finds_its_children(tmp_path: Path) -> None:
    """Its worker is killed after the children ended; the re-run calls them again by
    the same ids and gets their results: no child runs twice."""
    release = tmp_path / "release"
    with (
        make_platform(tmp_path, DispatchMode.PULL, workers=2, slots=2) as platform,
        Client(platform.url) as client,
    ):
        child = client.register(_child)

        def parent(marker_dir: str) -> int:
            import os
            import pathlib
            import time

            total = sum(child.map([marker_dir] * 4, range(4)))
            pathlib.Path(marker_dir, f"parent-{os.getpid()}").touch()
            while not pathlib.Path(marker_dir, "release").exists():
                time.sleep(0.01)
            return total

        task = client.register(parent).submit(str(tmp_path))
        first = _eventually(lambda: list(tmp_path.glob("parent-*")))
        worker = platform.worker_ids[task.info()["worker_id"]]
        assert worker.popen is not None
        os.killpg(worker.popen.pid, signal.SIGKILL)  # the worker and its slots
        _eventually(lambda: set(tmp_path.glob("parent-*")) - set(first))  # the re-run
        release.touch()
        assert task.result(timeout=60) == 0 + 1 + 2 + 3
        assert task.info()["attempt"] == 2
        assert len(list(tmp_path.glob("child-*"))) == 4  # each child ran once


def test_a_parent_waiting_through_a_dispatcher_restart_gets_its_results(
    tmp_path: Path,
) -> None:
    """The dispatcher is killed while a parent waits on children that then end while
    none runs: the worker asks its call again, and the parent gets their results at
    attempt 1, each child having run once."""
    with (
        make_platform(tmp_path, DispatchMode.PULL, workers=1, slots=3) as platform,
        Client(platform.url) as client,
    ):
        child = client.register(_held_child)
        parent = client.register(lambda d: sum(child.map([d] * 2, range(1, 3))))
        task = parent.submit(str(tmp_path))
        _eventually(lambda: len(list(tmp_path.glob("child-*"))) == 2)
        assert platform.dispatcher is not None
        platform.dispatcher.kill()
        (tmp_path / "release").touch()
        _eventually(lambda: len(list(tmp_path.glob("ended-*"))) == 2)
        platform.start_dispatcher()
        assert task.result(timeout=60) == 1 + 2
        assert task.info()["attempt"] == 1
        assert len(list(tmp_path.glob("child-*"))) == 2  # each child ran once


def _held_child(marker_dir: str, i: int) -> int:
    import pathlib
    import time
    import uuid

    pathlib.Path(marker_dir, f"child-{i}-{uuid.uuid4().hex}").touch()
    while not pathlib.Path(marker_dir, "release").exists():
        time.sleep(0.01)
    pathlib.Path(marker_dir, f"ended-{i}").touch()
    return i


def _eventually(check, timeout_s: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.02)
    raise AssertionError(f"not true within {timeout_s} s")


def test_a_cancelled_parent_cancels_its_children(tmp_path: Path) -> None:
    with (
        make_platform(tmp_path, DispatchMode.LOCAL, slots=2) as platform,
        Client(platform.url) as client,
    ):

        def forever(marker_dir: str, i: int) -> None:
            import pathlib
            import time

            pathlib.Path(marker_dir, f"child-{i}").touch()
            time.sleep(3600)

        child = client.register(forever)
        parent = client.register(lambda d: child.map([d] * 3, range(3)))
        task = parent.submit(str(tmp_path))
        _eventually(lambda: list(tmp_path.glob("child-*")))  # children started
        task.cancel()
        children = _eventually(
            lambda: (
                [t for t in client.tasks(function_id=child.id) if t["status"] == "CANCELLED"]
                if all(t["status"] == "CANCELLED" for t in client.tasks(function_id=child.id))
                else None
            )
        )
        assert len(children) == 3
        assert task.info()["status"] == "CANCELLED"
