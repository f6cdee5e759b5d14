"""Futures as arguments in the store (submit.lua, dependents.lua) against a real
redis-server: a task with dependencies waits (WAITING, no queue entry, counted in
its tenant's quota) until they complete, then is queued with their ids; a failed or
cancelled dependency fails it (dependency_failed) and its own dependents in turn;
dependencies are the tenant's own tasks."""

from __future__ import annotations

import pickle
import uuid

import pytest

from common.errors import TaskNotFound
from common.models import ErrorKind, TaskStatus
from common.store import Outcome, Store
from tests.integration.test_store import done, run

FAILURE = pickle.dumps(RuntimeError("cancelled"))


async def function(store: Store, tenant: str = "default") -> str:
    function_id = str(uuid.uuid4())
    await store.register_function(function_id, "f", pickle.dumps(len), tenant=tenant)
    return function_id


async def submit(store: Store, function_id: str, *deps: str, tenant: str = "default") -> str:
    (task_id,) = await store.submit(
        function_id, [(str(uuid.uuid4()), b"args")], deadline_s=5, max_attempts=1,
        depends_on=deps, tenant=tenant,
    )  # fmt: skip
    return task_id


async def status(store: Store, task_id: str) -> TaskStatus:
    record = await store.get_task(task_id)
    assert record is not None
    return record.status


async def unfinished(store: Store) -> int:
    return int(await store.redis.hget(store.keys.unfinished, "default") or 0)


def test_a_task_waits_for_its_dependencies_then_is_queued_with_their_results(
    redis_url: str,
) -> None:
    async def scenario(store: Store) -> None:
        f = await function(store)
        a, b = await submit(store, f), await submit(store, f)
        waiter = await submit(store, f, a, b, a)  # a repeated future counts once
        assert await status(store, waiter) is TaskStatus.WAITING
        assert await unfinished(store) == 3, "a WAITING task counts against the quota"
        first, second = await store.read_queue(count=10, block_ms=100)
        assert {first.task_id, second.task_id} == {a, b}, "the waiter is not queued"
        assert await store.finish([done(first, 1)]) == [True]
        assert await status(store, waiter) is TaskStatus.WAITING
        assert await store.read_queue(count=10, block_ms=None) == []
        assert await store.finish([done(second, 2)]) == [True]
        assert await status(store, waiter) is TaskStatus.QUEUED
        (entry,) = await store.read_queue(count=10, block_ms=100)
        assert entry.task_id == waiter and entry.payload == b"args"
        assert entry.depends_on == (a, b)
        results = await store.dependency_results(entry.depends_on, most_bytes=1000)
        assert isinstance(results, dict)
        assert {k: pickle.loads(v) for k, v in results.items()} == {
            first.task_id: 1,
            second.task_id: 2,
        }
        too_big = await store.dependency_results(entry.depends_on, most_bytes=4)
        assert isinstance(too_big, str) and "over 4" in too_big
        gone = str(uuid.uuid4())
        assert await store.dependency_results([a, gone], most_bytes=1000) == (
            f"dependency {gone} is gone (expired)"
        )
        fields = await store.redis.hmget(store.keys.task(waiter), ["payload", "waiting"])
        assert fields == [None, None], "the args live in the queue entry now"
        assert not await store.redis.exists(store.keys.dependents(a))

    run(redis_url, scenario)


def test_a_dependency_complete_at_submit_time_counts_as_done(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        f = await function(store)
        a = await submit(store, f)
        (entry,) = await store.read_queue(count=10, block_ms=100)
        await store.finish([done(entry, 5)])
        waiter = await submit(store, f, a)
        assert await status(store, waiter) is TaskStatus.QUEUED
        (entry,) = await store.read_queue(count=10, block_ms=100)
        assert entry.task_id == waiter and entry.depends_on == (a,)

    run(redis_url, scenario)


def test_a_failed_dependency_fails_its_dependents_down_the_chain(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        f = await function(store)
        a, other = await submit(store, f), await submit(store, f)
        b = await submit(store, f, a, other)
        c = await submit(store, f, b)
        d = await submit(store, f, c)
        entries = {e.task_id: e for e in await store.read_queue(count=10, block_ms=100)}
        failed = Outcome(a, entries[a].entry_id, 1, TaskStatus.FAILED, b"", "boom",
                         ErrorKind.USER)  # fmt: skip
        assert await store.finish([failed]) == [True]
        for task_id in (b, c, d):
            record = await store.get_task(task_id)
            assert record is not None and record.status is TaskStatus.FAILED
            assert record.error_kind is ErrorKind.DEPENDENCY_FAILED
        record = await store.get_task(b)
        assert record is not None and record.error == f"dependency {a} ended FAILED"
        assert record.result is not None
        assert str(pickle.loads(record.result)) == record.error, "a RuntimeError"
        assert await unfinished(store) == 1, "only `other` is left"
        # `other` completing later finds b ended: nothing moves, nothing is queued
        assert await store.finish([done(entries[other], 0)]) == [True]
        assert await store.read_queue(count=10, block_ms=None) == []
        # submitting against a failed task fails at once
        late = await submit(store, f, a)
        record = await store.get_task(late)
        assert record is not None and record.error_kind is ErrorKind.DEPENDENCY_FAILED
        assert record.result is not None
        assert isinstance(pickle.loads(record.result), RuntimeError)
        assert await unfinished(store) == 0

    run(redis_url, scenario)


def test_cancelling_a_waiting_task_and_a_dependency(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        f = await function(store)
        a = await submit(store, f)
        waiter = await submit(store, f, a)
        second = await submit(store, f, a)
        assert await store.cancel([waiter], failure=FAILURE, error="x") == ["CANCELLED"]
        assert await status(store, waiter) is TaskStatus.CANCELLED
        assert await store.cancel([a], failure=FAILURE, error="x") == ["CANCELLED"]
        record = await store.get_task(second)
        assert record is not None and record.status is TaskStatus.FAILED
        assert record.error == f"dependency {a} ended CANCELLED"
        assert await status(store, waiter) is TaskStatus.CANCELLED, "ended once only"
        assert await unfinished(store) == 0

    run(redis_url, scenario)


def test_dependencies_are_the_tenants_own_tasks_at_most_a_thousand(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        with pytest.raises(ValueError, match="at most 1000"):
            await submit(store, str(uuid.uuid4()), *(str(uuid.uuid4()) for _ in range(1001)))
        theirs = await submit(store, await function(store, "other"), tenant="other")
        mine = await function(store)
        for dep in (theirs, str(uuid.uuid4())):
            with pytest.raises(TaskNotFound) as caught:
                await submit(store, mine, dep)
            assert str(dep) in str(caught.value)
        assert await unfinished(store) == 0
        assert len(await store.read_queue(count=10, block_ms=100)) == 1  # theirs only

    run(redis_url, scenario)
