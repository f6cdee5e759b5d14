"""cancel.lua against a real redis-server: a cancelled task ends CANCELLED exactly once,
its queue entry goes (read or not), the dispatcher is told, and a late result or
re-queue of the attempt changes nothing."""

from __future__ import annotations

import asyncio
import pickle
import random
import uuid
from concurrent.futures import CancelledError

import msgpack

from common.models import ErrorKind, TaskStatus
from common.store import Store
from tests.integration.test_store import done, run, submit_one

FAILURE = pickle.dumps(CancelledError("cancelled"))


async def cancel(store: Store, *task_ids: str) -> list[str]:
    return await store.cancel(list(task_ids), failure=FAILURE, error="cancelled")


async def notices(store: Store) -> list[str]:
    return [raw.decode() for raw in await store.redis.lrange(store.keys.cancels, 0, -1)]


def test_a_queued_task_never_read_is_cancelled_and_never_delivered(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        function_id = str(uuid.uuid4())
        await store.register_function(function_id, "f", pickle.dumps(len))
        (task_id,) = await store.submit(
            function_id, [(str(uuid.uuid4()), b"args")], deadline_s=5, max_attempts=3
        )
        assert await cancel(store, task_id) == ["CANCELLED"]
        record = await store.get_task(task_id)
        assert record is not None and record.status is TaskStatus.CANCELLED
        assert record.error_kind is ErrorKind.CANCELLED and record.finished_at_ms
        assert isinstance(pickle.loads(record.result), CancelledError)
        assert await store.read_queue(count=10, block_ms=100) == []
        assert await store.queue_depth() == (0, 0)
        assert await notices(store) == [task_id]

    run(redis_url, scenario)


def test_an_attempt_held_by_the_dispatcher_leaves_its_pending_list(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        entry = await submit_one(store)  # read: in the PEL, still QUEUED
        assert await store.queue_depth() == (0, 1)
        assert await cancel(store, entry.task_id) == ["CANCELLED"]
        assert await store.queue_depth() == (0, 0)
        assert await store.read_queue(count=10, block_ms=None, pending=True, nested=False) == []
        assert await store.mark_started([(entry.task_id, 1, "w1")]) == [-1], "kill it"
        assert await store.next_cancels(timeout_s=0.1) == [entry.task_id]

    run(redis_url, scenario)


def test_a_running_attempt_cannot_commit_or_come_back_after_a_cancel(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        entry = await submit_one(store)
        await store.mark_started([(entry.task_id, 1, "w1")])
        assert await cancel(store, entry.task_id) == ["CANCELLED"]
        assert await store.finish([done(entry, "late")]) == [False]
        assert await store.requeue(entry, error="lost", failure=b"") == "stale"
        record = await store.get_task(entry.task_id)
        assert record is not None and record.status is TaskStatus.CANCELLED
        assert isinstance(pickle.loads(record.result), CancelledError)
        assert await store.queue_depth() == (0, 0)

    run(redis_url, scenario)


def test_a_requeued_task_is_cancelled_through_its_new_entry(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        entry = await submit_one(store)
        await store.mark_started([(entry.task_id, 1, "w1")])
        assert await store.requeue(entry, error="lost", failure=b"") == "requeued"
        assert await store.queue_depth() == (1, 0)
        assert await cancel(store, entry.task_id) == ["CANCELLED"]
        assert await store.queue_depth() == (0, 0)
        assert await store.read_queue(count=10, block_ms=100) == []

    run(redis_url, scenario)


def test_cancelling_an_ended_or_cancelled_task_changes_nothing(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        finished, cancelled = await submit_one(store), await submit_one(store)
        await store.finish([done(finished, 42)])
        assert await cancel(store, cancelled.task_id) == ["CANCELLED"]
        first = await store.get_task(cancelled.task_id)
        unknown = str(uuid.uuid4())
        assert await cancel(store, finished.task_id, cancelled.task_id, unknown) == [
            "COMPLETED",
            "CANCELLED",
            "",
        ]
        assert await store.get_task(cancelled.task_id) == first
        record = await store.get_task(finished.task_id)
        assert record is not None and pickle.loads(record.result) == 42
        assert await notices(store) == [cancelled.task_id], "one notice, for the one cancel"
        assert await store.get_task(unknown) is None

    run(redis_url, scenario)


def test_cancel_racing_a_result_ends_each_task_exactly_once(redis_url: str) -> None:
    """Cancel and commit race on separate connections, in random order: every task
    ends exactly once (one publication), its result matching its status."""

    async def scenario(store: Store) -> None:
        other = Store.from_url(redis_url, prefix=store.keys.prefix, result_ttl_s=60)
        pubsub = store.redis.pubsub()
        await pubsub.subscribe(store.keys.done_channel)
        try:
            entries = [await submit_one(store) for _ in range(300)]
            outcomes = {}
            for entry in entries:
                await store.mark_started([(entry.task_id, 1, "w1")])
                commit = store.finish([done(entry, entry.task_id)])
                cancelling = cancel(other, entry.task_id)
                if random.random() < 0.5:
                    (committed,), (status,) = await asyncio.gather(commit, cancelling)
                else:
                    (status,), (committed,) = await asyncio.gather(cancelling, commit)
                assert committed != (status == "CANCELLED"), (committed, status)
                outcomes[entry.task_id] = status
            ends: dict[str, int] = {}
            while (message := await pubsub.get_message(timeout=0.5)) is not None:
                if message["type"] != "message":
                    continue
                task_id = msgpack.unpackb(message["data"], raw=True)[0].decode()
                ends[task_id] = ends.get(task_id, 0) + 1
            assert ends == dict.fromkeys(outcomes, 1)
            for record in await store.get_tasks(list(outcomes)):
                assert record is not None
                assert record.status.value == outcomes[record.task_id]
                value = pickle.loads(record.result)
                if record.status is TaskStatus.COMPLETED:
                    assert value == record.task_id
                else:
                    assert isinstance(value, CancelledError)
            assert {"COMPLETED", "CANCELLED"} <= set(outcomes.values()), "both sides won"
            assert await store.queue_depth() == (0, 0)
        finally:
            await pubsub.aclose()
            await other.close()

    run(redis_url, scenario)
