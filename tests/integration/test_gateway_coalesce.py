"""Single submits committed together (real redis-server): `Store.submit_many` answers
each submission as `submit` alone would, and the gateway's concurrent single submits
(JSON, binary and the course route) each get their own task or their own error."""

from __future__ import annotations

import asyncio
import pickle
import uuid

import pytest

from common.errors import (
    FunctionNotFound,
    IdempotencyConflict,
    QuotaExceeded,
    StoreUnavailable,
    TaskNotFound,
)
from common.models import TaskStatus
from common.store import Store, Submission, Submitted


def run(redis_url: str, scenario) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        store = Store.from_url(redis_url, prefix=f"c{uuid.uuid4().hex[:8]}", result_ttl_s=60)
        try:
            await store.ensure_group()
            await scenario(store)
        finally:
            await store.close()

    asyncio.run(main())


async def function(store: Store, tenant: str = "default") -> str:
    function_id = str(uuid.uuid4())
    await store.register_function(function_id, "f", pickle.dumps(len), tenant=tenant)
    return function_id


def one(function_id: str, **options: object) -> Submission:
    defaults: dict = {"deadline_s": 5, "max_attempts": 3}
    return Submission(function_id, [(str(uuid.uuid4()), b"args")], **{**defaults, **options})


async def unfinished(store: Store, tenant: str = "default") -> int:
    return int(await store.redis.hget(store.keys.unfinished, tenant) or 0)


def test_each_submission_gets_its_own_answer(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        fid, other = await function(store), await function(store)
        done = await store.submit(fid, [(str(uuid.uuid4()), b"d")], deadline_s=5, max_attempts=3)
        key = str(uuid.uuid4())
        first = one(fid, idempotency_key=key, idempotency_digest="d1")
        await store.submit_many([first])
        batch = Submission(fid, [(str(uuid.uuid4()), b"a"), (str(uuid.uuid4()), b"b")], 5, 3)
        submissions = [
            one(fid),
            one(str(uuid.uuid4())),  # unknown function
            batch,  # merged with the first: two tasks of its own
            one(other, deadline_s=9),  # another function, other options: another call
            one(fid, idempotency_key=key, idempotency_digest="d1"),  # the same request again
            one(fid, idempotency_key=key, idempotency_digest="d2"),  # another with that key
            one(fid, depends_on=[str(uuid.uuid4())]),  # an unknown dependency
            one(fid, depends_on=done),  # waits for a queued task
            one(fid, tenant="eve"),  # another tenant's function: unknown to her
            one(fid, deadline_s=5.0),  # the same options as the first: merged
        ]
        answers = await store.submit_many(submissions)
        good = [0, 2, 3, 7, 9]
        for i in good:
            answer = answers[i]
            assert isinstance(answer, Submitted), (i, answer)
            assert answer.task_ids == [t for t, _ in submissions[i].tasks]
        assert isinstance(answers[1], FunctionNotFound)
        assert isinstance(answers[8], FunctionNotFound)
        assert isinstance(answers[4], Submitted)
        assert answers[4].task_ids == [first.tasks[0][0]], "the key's first task"
        assert isinstance(answers[5], IdempotencyConflict)
        assert isinstance(answers[6], TaskNotFound)
        records = await store.get_tasks([t for i in good for t, _ in submissions[i].tasks])
        assert [r.status if r else None for r in records] == [
            TaskStatus.QUEUED, TaskStatus.QUEUED, TaskStatus.QUEUED, TaskStatus.QUEUED,
            TaskStatus.WAITING, TaskStatus.QUEUED,
        ]  # fmt: skip
        assert records[3] is not None and records[3].deadline_s == 9
        assert all(r is not None and r.queued_at_ms == answers[0].queued_ms for r in records)
        assert await unfinished(store) == 1 + 1 + 6, "each new task counted once"
        assert await unfinished(store, "eve") == 0

    run(redis_url, scenario)


def test_a_quota_refusal_is_each_submissions_own(redis_url: str) -> None:
    """Merged into one call, three submits would pass a quota that fits two: alone,
    one after the other, the first two fit. So they are."""

    async def scenario(store: Store) -> None:
        fid = await function(store, "carol")
        submissions = [one(fid, tenant="carol", max_unfinished=2) for _ in range(3)]
        answers = await store.submit_many(submissions)
        assert [type(a) for a in answers] == [Submitted, Submitted, QuotaExceeded]
        assert await unfinished(store, "carol") == 2
        (refused,) = [s.tasks[0][0] for s, a in zip(submissions, answers, strict=True)
                      if isinstance(a, QuotaExceeded)]  # fmt: skip
        assert await store.get_task(refused) is None, "a refused submit stores nothing"
        assert await store.queue_depth() == (2, 0)

    run(redis_url, scenario)


def test_an_outage_is_everyones() -> None:
    async def scenario() -> None:
        broken = Store.from_url("redis://127.0.0.1:1/0", prefix="x")  # nothing listens there
        try:
            with pytest.raises(StoreUnavailable):
                await broken.submit_many([one(str(uuid.uuid4())), one(str(uuid.uuid4()))])
        finally:
            await broken.close()

    asyncio.run(scenario())
