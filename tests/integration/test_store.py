"""The store's Lua scripts against a real redis-server: atomic submit, fenced
commits, re-queue accounting."""

from __future__ import annotations

import asyncio
import pickle
import random
import uuid

import pytest

from common.errors import FunctionNotFound, QuotaExceeded
from common.models import ErrorKind, TaskStatus
from common.store import Outcome, QueueEntry, Store, Submission


def run(redis_url: str, scenario) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        store = Store.from_url(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}", result_ttl_s=60)
        try:
            await store.ensure_group()
            await scenario(store)
        finally:
            await store.close()

    asyncio.run(main())


async def new_function(store: Store) -> str:
    function_id = str(uuid.uuid4())
    await store.register_function(function_id, "f", pickle.dumps(len))
    return function_id


async def submit_one(store: Store, max_attempts: int = 3) -> QueueEntry:
    function_id = await new_function(store)
    (task_id,) = await store.submit(
        function_id, [(str(uuid.uuid4()), b"args")], deadline_s=5, max_attempts=max_attempts
    )
    (entry,) = await store.read_queue(count=10, block_ms=100)
    assert entry.task_id == task_id and entry.payload == b"args"
    return entry


def done(entry: QueueEntry, value: object, attempt: int | None = None) -> Outcome:
    return Outcome(
        entry.task_id,
        entry.entry_id,
        attempt or entry.attempt,
        TaskStatus.COMPLETED,
        pickle.dumps(value),
    )


def test_submit_to_an_unknown_function_adds_nothing(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        with pytest.raises(FunctionNotFound):
            await store.submit(str(uuid.uuid4()), [("t", b"")], deadline_s=1, max_attempts=1)
        assert await store.queue_depth() == (0, 0)

    run(redis_url, scenario)


def test_a_result_is_committed_once_and_a_late_one_is_refused(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        entry = await submit_one(store)
        assert await store.mark_started([(entry.task_id, 1, "w1")]) == [True]
        assert await store.finish([done(entry, "first")]) == [True]
        assert await store.finish([done(entry, "second")]) == [False]
        record = await store.get_task(entry.task_id)
        assert record is not None and record.status is TaskStatus.COMPLETED
        assert pickle.loads(record.result) == "first"
        assert await store.queue_depth() == (0, 0), "the entry is acked and deleted"

    run(redis_url, scenario)


def test_a_result_from_a_presumed_dead_worker_never_overwrites(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        entry = await submit_one(store)
        await store.mark_started([(entry.task_id, 1, "w1")])
        # w1 is declared dead: the task goes back at attempt 2 and runs on w2
        assert await store.requeue(entry, error="lost", failure=b"") == "requeued"
        (retry,) = await store.read_queue(count=10, block_ms=100)
        assert (retry.attempt, retry.payload) == (2, b"args")
        await store.mark_started([(retry.task_id, 2, "w2")])
        # w1's late result for attempt 1 is refused; w2's is committed
        assert await store.finish([done(entry, "late")]) == [False]
        assert await store.finish([done(retry, "right")]) == [True]
        record = await store.get_task(entry.task_id)
        assert record is not None and pickle.loads(record.result) == "right"
        assert (record.attempt, record.worker_id) == (2, "w2")

    run(redis_url, scenario)


def test_an_attempt_that_never_started_is_not_counted(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        entry = await submit_one(store, max_attempts=1)
        assert await store.requeue(entry, error="lost", failure=b"") == "requeued"
        (again,) = await store.read_queue(count=10, block_ms=100)
        assert again.attempt == 1

    run(redis_url, scenario)


def test_a_task_whose_workers_keep_dying_fails_after_max_attempts(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        entry = await submit_one(store, max_attempts=2)
        for attempt in (1, 2):
            await store.mark_started([(entry.task_id, attempt, "w")])
            verdict = await store.requeue(
                entry, error="WorkerFailure: gone", failure=pickle.dumps(RuntimeError("gone"))
            )
            if attempt == 1:
                assert verdict == "requeued"
                (entry,) = await store.read_queue(count=10, block_ms=100)
        assert verdict == "failed"
        record = await store.get_task(entry.task_id)
        assert record is not None and record.status is TaskStatus.FAILED
        assert record.error_kind is ErrorKind.WORKER_LOST
        assert isinstance(pickle.loads(record.result), RuntimeError)
        assert await store.queue_depth() == (0, 0)

    run(redis_url, scenario)


def test_the_pending_list_is_found_again_after_a_crash(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        entry = await submit_one(store)
        held = await store.read_queue(count=10, block_ms=None, pending=True, nested=False)
        assert [e.task_id for e in held] == [entry.task_id]
        assert await store.queue_depth() == (0, 1)

    run(redis_url, scenario)


def test_the_lease_has_one_holder(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        assert await store.acquire_lease("a", 5)
        assert not await store.acquire_lease("b", 5)
        assert not await store.renew_lease("b", 5)
        assert await store.renew_lease("a", 5)
        await store.release_lease("a")
        assert await store.acquire_lease("b", 5)

    run(redis_url, scenario)


def test_completions_are_published(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        stream = store.completions()
        assert await anext(stream) is None  # subscribed
        entry = await submit_one(store)
        await store.finish([done(entry, 1)])
        ended = await asyncio.wait_for(anext(stream), 5)
        assert ended is not None and ended.task_id == entry.task_id
        assert ended.record is not None and ended.record.status is TaskStatus.COMPLETED
        assert pickle.loads(ended.record.result) == 1, "a small result travels in the message"
        big = await submit_one(store)
        await store.finish([done(big, b"x" * (store.inline_result_bytes + 1))])
        ended = await asyncio.wait_for(anext(stream), 5)
        assert ended is not None and (ended.task_id, ended.record) == (big.task_id, None)
        await stream.aclose()

    run(redis_url, scenario)


def test_a_store_call_can_always_be_cancelled(redis_url: str) -> None:
    """The dispatcher stops by cancelling its loops; a Redis client that swallows a
    cancellation mid-command (redis-py 8.0-8.1 did, in over half of the tries) hangs
    that stop forever."""
    ids = [str(uuid.uuid4()) for _ in range(50)]
    rng = random.Random(3)

    async def main() -> int:
        store = Store.from_url(redis_url, prefix=f"cancel-{uuid.uuid4().hex[:8]}")

        async def busy() -> None:
            while True:
                await store.mark_started([(t, 1, "w") for t in ids])
                await store.get_tasks(ids)

        swallowed = 0
        try:
            for _ in range(30):
                task = asyncio.create_task(busy())
                await asyncio.sleep(rng.random() * 0.01)
                task.cancel()
                done, _ = await asyncio.wait([task], timeout=2)
                if not (done and task.cancelled()):
                    swallowed += 1
                    task.cancel()
        finally:
            await store.close()
        return swallowed

    assert asyncio.run(main()) == 0, "cancellations were swallowed"


def test_a_stale_attempts_large_result_never_overwrites_the_committed_one(redis_url: str) -> None:
    """Large results are staged under their own key and renamed by finish.lua only
    when the fence passes; a stale attempt's staged result is deleted, never kept."""
    big = Store.inline_result_bytes + 1

    async def scenario(store: Store) -> None:
        entry = await submit_one(store)
        await store.mark_started([(entry.task_id, 1, "w1")])
        assert await store.requeue(entry, error="lost", failure=b"") == "requeued"
        (retry,) = await store.read_queue(count=10, block_ms=100)
        await store.mark_started([(retry.task_id, 2, "w2")])
        right, late = b"r" * big, b"l" * big
        assert await store.finish([done(retry, right)]) == [True]
        assert await store.finish([done(entry, late)]) == [False]  # attempt 1, presumed dead
        assert await store.finish([done(retry, late)]) == [False]  # attempt 2, again
        record = await store.get_task(entry.task_id)
        assert record is not None and pickle.loads(record.result) == right
        keys = store.keys
        assert not await store.redis.exists(
            keys.blob(entry.task_id, 1), keys.blob(entry.task_id, 2)
        )
        # kept apart from the hash, for exactly as long as the task record
        assert await store.redis.hmget(keys.task(entry.task_id), ["r", "o"]) == [None, b"1"]
        assert 0 < await store.redis.ttl(keys.result(entry.task_id)) <= store.result_ttl_s

    run(redis_url, scenario)


def test_large_and_small_results_in_one_finish(redis_url: str) -> None:
    """Replies are matched to their outcomes even with staging SETs between them, and
    the completion message leaves a large result out (the waiter reads it once)."""

    async def scenario(store: Store) -> None:
        entries = [await submit_one(store) for _ in range(3)]
        await store.mark_started([(e.task_id, 1, "w") for e in entries])
        values = [b"s", b"L" * (Store.inline_result_bytes * 2), b"t"]
        messages = store.completions()
        assert await anext(messages) is None  # subscribed
        outcomes = [done(e, v) for e, v in zip(entries, values, strict=True)]
        outcomes.append(done(entries[1], b"again"))  # stale: already committed above
        assert await store.finish(outcomes) == [True, True, True, False]
        ended = {}
        while len(ended) < 3:
            message = await asyncio.wait_for(anext(messages), 5)
            assert message is not None
            ended[message.task_id] = message.record
        assert ended[entries[1].task_id] is None  # too large to publish: read it
        assert pickle.loads(ended[entries[0].task_id].result) == b"s"
        records = await store.get_tasks([e.task_id for e in entries])
        assert [pickle.loads(r.result) for r in records if r is not None] == values
        await messages.aclose()


def test_scripts_run_again_after_redis_forgets_them(redis_url: str) -> None:
    """SCRIPT FLUSH (as after a Redis restart): each script is loaded again and run
    once, a pipeline's other commands are not repeated, and no SCRIPT EXISTS is sent."""

    async def scenario(store: Store) -> None:
        entries = [await submit_one(store) for _ in range(3)]
        await store.redis.script_flush()
        started = [(e.task_id, e.attempt, "w1") for e in entries]
        assert await store.mark_started(started) == [1, 1, 1]  # a direct call
        await store.redis.script_flush()
        before = await store.redis.info("commandstats")
        logs = [(entries[0].task_id, b"printed once\n")]
        committed = await store.finish([done(e, i) for i, e in enumerate(entries)], logs)
        assert committed == [True, True, True]  # in a pipeline
        after = await store.redis.info("commandstats")
        assert await store.read_logs(entries[0].task_id) == b"printed once\n"

        def calls(stats: dict, command: str) -> int:
            return stats.get(f"cmdstat_{command}", {}).get("calls", 0)

        assert calls(after, "script|load") - calls(before, "script|load") == 1
        assert calls(after, "script|exists") == calls(before, "script|exists")
        assert calls(after, "append") - calls(before, "append") == 1

    run(redis_url, scenario)


BIG = bytes(range(256)) * 1024  # 256 KiB: over Store.args_apart_bytes


async def stream_fields(store: Store, entry: QueueEntry) -> dict[bytes, bytes]:
    ((_, fields),) = await store.redis.xrange(store.keys.queue, entry.entry_id, entry.entry_id)
    return fields


def test_large_arguments_are_kept_apart_and_live_as_long_as_their_task(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        function_id = await new_function(store)
        big, small, empty = (str(uuid.uuid4()) for _ in range(3))
        tasks = [(big, BIG), (small, b"args"), (empty, b"")]  # empty is not "kept apart"
        await store.submit(function_id, tasks, deadline_s=5, max_attempts=3)
        entries = {e.task_id: e for e in await store.read_queue(count=10, block_ms=100)}
        assert entries[big].payload == BIG and entries[small].payload == b"args"
        assert entries[empty].payload == b""
        # Not in the stream, and kept (no TTL) under its own key while the task is open
        assert b"p" not in await stream_fields(store, entries[big])
        assert await store.redis.ttl(store.keys.args(big)) == -1
        assert await store.redis.exists(store.keys.args(small)) == 0
        # A lost attempt goes back with its arguments
        await store.mark_started([(big, 1, "w1")])
        assert await store.requeue(entries[big], error="lost", failure=b"") == "requeued"
        (again,) = [e for e in await store.read_queue(count=10, block_ms=100) if e.task_id == big]
        assert again.attempt == 2 and again.payload == BIG
        # They go when the task ends
        assert await store.finish([done(again, "ok")]) == [True]
        assert await store.redis.exists(store.keys.args(big)) == 0

    run(redis_url, scenario)


def test_large_arguments_of_a_refused_or_cancelled_submit_leave_nothing(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        function_id = await new_function(store)
        options = {"deadline_s": 5, "max_attempts": 1}
        refused = [str(uuid.uuid4()) for _ in range(3)]
        with pytest.raises(FunctionNotFound):
            await store.submit(str(uuid.uuid4()), [(refused[0], BIG)], **options)
        with pytest.raises(QuotaExceeded):
            await store.submit(function_id, [(refused[1], BIG)], max_unfinished=0, **options)
        once = {"idempotency_key": "k", "idempotency_digest": "d", **options}
        first = await store.submit(function_id, [(str(uuid.uuid4()), BIG)], **once)
        replay = await store.submit(function_id, [(refused[2], BIG)], **once)
        assert replay == first
        for task_id in refused:
            assert await store.redis.exists(store.keys.args(task_id)) == 0, task_id
        # In a batch of submits, each refusal drops only its own
        kept, dropped = str(uuid.uuid4()), str(uuid.uuid4())
        answers = await store.submit_many([
            Submission(function_id, [(kept, BIG)], **options),
            Submission(str(uuid.uuid4()), [(dropped, BIG)], **options),
        ])  # fmt: skip
        assert isinstance(answers[1], FunctionNotFound)
        assert await store.redis.exists(store.keys.args(kept), store.keys.args(dropped)) == 1
        # A cancelled task's go with it
        assert await store.cancel([kept], failure=b"", error="cancelled") == ["CANCELLED"]
        assert await store.redis.exists(store.keys.args(kept)) == 0

    run(redis_url, scenario)


def test_a_task_whose_large_arguments_vanished_is_read_without_them(redis_url: str) -> None:
    """The dispatcher then fails it (arguments_lost) instead of running it."""

    async def scenario(store: Store) -> None:
        function_id = await new_function(store)
        (task_id,) = await store.submit(function_id, [(str(uuid.uuid4()), BIG)], deadline_s=5,
                                        max_attempts=1)  # fmt: skip
        await store.redis.delete(store.keys.args(task_id))
        (entry,) = await store.read_queue(count=10, block_ms=100)
        assert entry.task_id == task_id and entry.payload is None

    run(redis_url, scenario)


def test_a_waiting_task_is_queued_with_its_large_arguments(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        dependency = await submit_one(store)
        (waiter,) = await store.submit(dependency.function_id, [(str(uuid.uuid4()), BIG)],
                                       deadline_s=5, max_attempts=1,
                                       depends_on=[dependency.task_id])  # fmt: skip
        assert await store.read_queue(count=10, block_ms=100) == []  # WAITING
        assert await store.finish([done(dependency, 1)]) == [True]
        (entry,) = await store.read_queue(count=10, block_ms=100)
        assert entry.task_id == waiter and entry.payload == BIG
        assert b"p" not in await stream_fields(store, entry)

    run(redis_url, scenario)
