"""Retention in the store, against a real redis-server: the retained form an ended
task is rewritten into (small, a listpack, read back the same), its TTL (the task's,
else its function's, else the setting's) shared by its result and output, shortened
once its result is read, and records, results and listings an older version wrote."""

from __future__ import annotations

import asyncio
import pickle
import time
import uuid

from common.models import DEFAULT_RETENTION, ErrorKind, Retention, TaskRecord, TaskStatus
from common.store import Outcome, QueueEntry, Store
from tests.integration.test_store import done, run

WORKER = "faas-worker-7d9f8b6c5d-x2kq9-with-a-long-pod-name"


async def started(
    store: Store,
    retention: Retention = DEFAULT_RETENTION,
    of_function: Retention = DEFAULT_RETENTION,
) -> QueueEntry:
    """A task of a fresh function, RUNNING on WORKER."""
    function_id = str(uuid.uuid4())
    await store.register_function(function_id, "f", pickle.dumps(len), retention=of_function)
    await store.submit(
        function_id, [(str(uuid.uuid4()), b"args")], deadline_s=5, max_attempts=3,
        retention=retention,
    )  # fmt: skip
    (entry,) = await store.read_queue(count=10, block_ms=100)
    assert await store.mark_started([(entry.task_id, 1, WORKER)]) == [1]
    return entry


async def ttl(store: Store, key: str) -> int:
    return int(await store.redis.ttl(key))


def test_an_ended_task_is_a_small_listpack_that_reads_back_the_same(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        submitted = int(time.time() * 1000)
        entry = await started(store)
        messages = store.completions()
        assert await anext(messages) is None
        assert await store.finish([done(entry, None)]) == [True]
        published = await asyncio.wait_for(anext(messages), 5)
        key = store.keys.task(entry.task_id)
        assert set(await store.redis.hkeys(key)) == {b"h", b"w", b"r"}
        assert await store.redis.object("encoding", key) == b"listpack"
        assert await store.redis.memory_usage(key, samples=0) <= 184
        record = await store.get_task(entry.task_id)
        assert record is not None and published is not None and published.record == record
        assert (record.status, record.attempt, record.max_attempts) == (
            TaskStatus.COMPLETED, 1, 3,
        )  # fmt: skip
        assert (record.deadline_s, record.worker_id, record.tenant) == (5.0, WORKER, "default")
        assert record.function_id == entry.function_id and pickle.loads(record.result) is None
        assert record.started_at_ms is not None and record.finished_at_ms is not None
        assert submitted <= record.queued_at_ms <= record.started_at_ms <= record.finished_at_ms
        assert (record.error, record.error_kind, record.expire_after_read) == (None, None, False)

    run(redis_url, scenario)


def test_a_result_too_long_for_a_listpack_is_kept_apart_for_as_long(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        entry = await started(store)
        value = b"v" * 1000
        messages = store.completions()
        assert await anext(messages) is None
        assert await store.finish([done(entry, value)]) == [True]
        published = await asyncio.wait_for(anext(messages), 5)
        key, result = store.keys.task(entry.task_id), store.keys.result(entry.task_id)
        assert set(await store.redis.hkeys(key)) == {b"h", b"w", b"o"}
        assert await store.redis.object("encoding", key) == b"listpack"
        assert 0 < await ttl(store, result) <= await ttl(store, key) <= store.result_ttl_s
        record = await store.get_task(entry.task_id)
        assert record is not None and pickle.loads(record.result) == value
        assert published is not None and published.record == record, "it travels inline"

    run(redis_url, scenario)


def test_a_failure_with_a_long_traceback_keeps_its_result_in_the_hash(redis_url: str) -> None:
    """The traceback makes the hash a hashtable anyway: a result key would only add."""

    async def scenario(store: Store) -> None:
        entry = await started(store)
        error = "Traceback (most recent call last):\n" + "  line\n" * 50 + "ValueError: no"
        outcome = Outcome(
            entry.task_id, entry.entry_id, 1, TaskStatus.FAILED,
            pickle.dumps(ValueError("no")), error, ErrorKind.USER,
        )  # fmt: skip
        assert await store.finish([outcome]) == [True]
        assert not await store.redis.exists(store.keys.result(entry.task_id))
        record = await store.get_task(entry.task_id)
        assert record is not None and record.status is TaskStatus.FAILED
        assert (record.error, record.error_kind) == (error, ErrorKind.USER)
        assert isinstance(pickle.loads(record.result), ValueError)

    run(redis_url, scenario)


def test_a_task_is_kept_for_its_own_ttl_else_its_functions_else_the_setting(
    redis_url: str,
) -> None:
    async def scenario(store: Store) -> None:
        cases = [  # (the task's, the function's, expected TTL)
            (Retention(), Retention(), store.result_ttl_s),
            (Retention(), Retention(result_ttl_s=500), 500),
            (Retention(result_ttl_s=100), Retention(result_ttl_s=500), 100),
            (Retention(result_ttl_s=7200), Retention(), 7200),  # longer than the setting
        ]
        for retention, of_function, expected in cases:
            entry = await started(store, retention, of_function)
            await store.append_logs([(entry.task_id, b"printed\n")])
            assert await store.finish([done(entry, b"r" * 100)]) == [True]
            for key in (store.keys.task, store.keys.result, store.keys.logs):
                assert expected - 5 < await ttl(store, key(entry.task_id)) <= expected, key

    run(redis_url, scenario)


def test_cancelled_and_lost_tasks_keep_their_own_ttl_too(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        lost = await started(store, Retention(result_ttl_s=300))
        await store.append_logs([(lost.task_id, b"printed\n")])
        for attempt in (1, 2, 3):
            verdict = await store.requeue(lost, error="lost", failure=b"gone")
            if attempt < 3:
                (lost,) = await store.read_queue(count=10, block_ms=100)
                await store.mark_started([(lost.task_id, lost.attempt, WORKER)])
        assert verdict == "failed"
        cancelled = await started(store, Retention(result_ttl_s=200))
        assert await store.cancel([cancelled.task_id], failure=b"c" * 100, error="no") == [
            "CANCELLED"
        ]
        for task_id, expected in ((lost.task_id, 300), (cancelled.task_id, 200)):
            assert expected - 5 < await ttl(store, store.keys.task(task_id)) <= expected
        assert 295 < await ttl(store, store.keys.logs(lost.task_id)) <= 300
        record = await store.get_task(cancelled.task_id)
        assert record is not None and record.status is TaskStatus.CANCELLED
        assert record.result == b"c" * 100 and record.worker_id == WORKER
        assert await store.cancel([cancelled.task_id], failure=b"", error="") == ["CANCELLED"]

    run(redis_url, scenario)


def test_a_task_that_asked_goes_soon_once_its_result_was_read(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        cases = [  # (the task's, the function's, whether it goes once read)
            (Retention(expire_after_read=True), Retention(), True),
            (Retention(), Retention(expire_after_read=True), True),
            (Retention(expire_after_read=False), Retention(expire_after_read=True), False),
            (Retention(), Retention(), False),
        ]
        for retention, of_function, expected in cases:
            entry = await started(store, retention, of_function)
            assert await store.finish([done(entry, None)]) == [True]
            record = await store.get_task(entry.task_id)
            assert record is not None and record.expire_after_read is expected
        # Store.expire_read shortens, never lengthens, and reaches result and output
        entry = await started(store)
        await store.append_logs([(entry.task_id, b"printed\n")])
        assert await store.finish([done(entry, b"r" * 100)]) == [True]
        await store.expire_read([entry.task_id], 30)
        await store.expire_read([entry.task_id], 50)
        for key in (store.keys.task, store.keys.result, store.keys.logs):
            assert 25 < await ttl(store, key(entry.task_id)) <= 30, key

    run(redis_url, scenario)


def test_results_kept_apart_reach_the_tasks_that_take_them(redis_url: str) -> None:
    """dependency_results reads results wherever they are kept (a large one used to
    arrive empty)."""

    async def scenario(store: Store) -> None:
        values = [b"s", b"m" * 1000, b"L" * (Store.inline_result_bytes + 1)]
        entries = [await started(store) for _ in values]
        assert await store.finish([done(e, v) for e, v in zip(entries, values, strict=True)])
        ids = [e.task_id for e in entries]
        results = await store.dependency_results(ids, most_bytes=2**20)
        assert isinstance(results, dict)
        assert [pickle.loads(results[t]) for t in ids] == values
        too_big = await store.dependency_results(ids, most_bytes=Store.inline_result_bytes)
        assert isinstance(too_big, str) and "over" in too_big

    run(redis_url, scenario)


def test_ids_that_are_not_uuids_are_kept_as_text(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        await store.register_function("fn-1", "f", pickle.dumps(len))
        await store.submit("fn-1", [("task-1", b"args")], deadline_s=5, max_attempts=1)
        (entry,) = await store.read_queue(count=10, block_ms=100)
        assert await store.finish([done(entry, 1)]) == [True]
        record = await store.get_task("task-1")
        assert record is not None and (record.function_id, record.worker_id) == ("fn-1", None)
        listed, _ = await store.list_tasks(limit=10)
        assert [r.task_id for r in listed] == ["task-1"]

    run(redis_url, scenario)


# -- what an older version wrote ----------------------------------------------------


async def old_ended(store: Store, *, apart: bytes | None = None, tenant: str = "default") -> str:
    """A COMPLETED task as the previous version's finish.lua left it (open form)."""
    task_id = str(uuid.uuid4())
    key = store.keys.task(task_id)
    await store.redis.hset(key, mapping={
        "function_id": "0b5e1a7e-9a57-4c2a-8c1e-3f2d6a1b9c00", "tenant": tenant,
        "status": "COMPLETED", "attempt": 2, "max_attempts": 3, "deadline_ms": 300000,
        "queued_ms": 1700000000000, "nested": 0, "entry": "1700000000001-0",
        "started_ms": 1700000000005, "worker": "old-worker", "error": "", "error_kind": "",
        "finished_ms": 1700000000009,
        **({"result_apart": 1} if apart else {"result": pickle.dumps("old")}),
    })  # fmt: skip
    await store.redis.expire(key, 600)
    if apart:
        await store.redis.set(store.keys.result(task_id), apart, ex=600)
    return task_id


def test_a_task_an_older_version_ended_reads_the_same(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        task_id = await old_ended(store)
        record = await store.get_task(task_id)
        assert record == TaskRecord(
            task_id=task_id, function_id="0b5e1a7e-9a57-4c2a-8c1e-3f2d6a1b9c00",
            status=TaskStatus.COMPLETED, attempt=2, max_attempts=3, deadline_s=300.0,
            queued_at_ms=1700000000000, started_at_ms=1700000000005,
            finished_at_ms=1700000000009, worker_id="old-worker", error=None, error_kind=None,
            result=pickle.dumps("old"),
        )  # fmt: skip
        large = pickle.dumps(b"x" * 100_000)
        apart = await old_ended(store, apart=large)
        record = await store.get_task(apart)
        assert record is not None and record.result == large
        # the scripts see it ended: cancel answers its status, a dependent takes its result
        assert await store.cancel([task_id, apart], failure=b"", error="") == ["COMPLETED"] * 2
        results = await store.dependency_results([task_id, apart], most_bytes=2**20)
        assert results == {task_id: pickle.dumps("old"), apart: large}
        function_id = str(uuid.uuid4())
        await store.register_function(function_id, "f", pickle.dumps(len))
        (waiter,) = await store.submit(
            function_id, [(str(uuid.uuid4()), b"args")], deadline_s=5, max_attempts=1,
            depends_on=[task_id],
        )  # fmt: skip
        (entry,) = await store.read_queue(count=10, block_ms=100)
        assert (entry.task_id, entry.depends_on) == (waiter, (task_id,))

    run(redis_url, scenario)


def test_the_listing_goes_on_into_the_index_an_older_version_kept(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        old = [await old_ended(store) for _ in range(3)]
        gone = str(uuid.uuid4())  # listed, but its record expired
        old_index = store.keys.old_index("default")
        await store.redis.zadd(old_index, {old[0]: 1, old[1]: 2, gone: 2, old[2]: 2})
        new = []
        for _ in range(3):
            entry = await started(store)
            assert await store.finish([done(entry, None)]) == [True]
            new.append(entry.task_id)
        seen, cursors, cursor = [], [], None
        while True:
            page, cursor = await store.list_tasks(limit=2, cursor=cursor)
            seen += [r.task_id for r in page]
            cursors.append(cursor)
            if cursor is None:
                break
        assert seen[:3] == new[::-1], "newest first, the new index first"
        assert len(seen) == 6 and set(seen[3:5]) == {old[1], old[2]} and seen[5] == old[0]
        assert any(c and c.startswith("old:") for c in cursors)
        assert await store.redis.zscore(old_index, gone) is None, "dropped when met"
        assert 0 < await ttl(store, old_index) <= 2 * store.result_ttl_s, "it goes in time"

    run(redis_url, scenario)
