"""SubmitCoalescer with a fake store: submits of one event-loop tick share a commit,
a lone one is sent at once, those arriving during a commit share the next, and each
gets its own answer or error."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from common.errors import FunctionNotFound, StoreUnavailable
from common.store import Submission, Submitted
from gateway import coalesce
from gateway.coalesce import SubmitCoalescer


def one(payload: bytes = b"x") -> Submission:
    return Submission(str(uuid.uuid4()), [(str(uuid.uuid4()), payload)], 5, 3)


class FakeStore:
    """Records each commit; a commit waits for `release` when `hold` is set."""

    def __init__(self, *, hold: bool = False) -> None:
        self.commits: list[list[Submission]] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.hold = hold
        self.unknown: set[str] = set()
        self.fail: Exception | None = None

    async def submit_many(self, submissions: list[Submission]) -> list[Submitted | Exception]:
        self.commits.append(list(submissions))
        self.started.set()
        if self.hold:
            await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return [
            FunctionNotFound(s.function_id)
            if s.function_id in self.unknown
            else Submitted([t for t, _ in s.tasks], 7)
            for s in submissions
        ]


def test_submits_of_one_tick_share_one_commit_and_keep_their_own_answers() -> None:
    async def scenario() -> None:
        store = FakeStore()
        coalescer = SubmitCoalescer(store)  # type: ignore[arg-type]
        submissions = [one() for _ in range(20)]
        store.unknown = {submissions[3].function_id, submissions[11].function_id}
        answers = await asyncio.gather(
            *(coalescer.submit(s) for s in submissions), return_exceptions=True
        )
        assert len(store.commits) == 1 and store.commits[0] == submissions
        for i, (submission, answer) in enumerate(zip(submissions, answers, strict=True)):
            if i in (3, 11):
                assert isinstance(answer, FunctionNotFound)
                assert answer.function_id == submission.function_id
            else:
                assert answer == Submitted([submission.tasks[0][0]], 7)

    asyncio.run(scenario())


def test_a_lone_submit_is_committed_without_waiting_for_others() -> None:
    async def scenario() -> None:
        store = FakeStore()
        coalescer = SubmitCoalescer(store)  # type: ignore[arg-type]
        lone = one()
        answer = await asyncio.wait_for(coalescer.submit(lone), 5)
        assert answer.task_ids == [lone.tasks[0][0]] and store.commits == [[lone]]

    asyncio.run(scenario())


def test_submits_during_a_commit_share_the_next_one() -> None:
    async def scenario() -> None:
        store = FakeStore(hold=True)
        coalescer = SubmitCoalescer(store)  # type: ignore[arg-type]
        first = asyncio.ensure_future(coalescer.submit(one()))
        await asyncio.wait_for(store.started.wait(), 5)
        later = [asyncio.ensure_future(coalescer.submit(one())) for _ in range(5)]
        await asyncio.sleep(0)  # they are queued behind the commit in flight
        assert len(store.commits) == 1
        store.release.set()
        await asyncio.wait_for(asyncio.gather(first, *later), 5)
        assert [len(c) for c in store.commits] == [1, 5]

    asyncio.run(scenario())


def test_commits_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coalesce, "MAX_SUBMISSIONS", 4)
    monkeypatch.setattr(coalesce, "MAX_BYTES", 100)

    async def scenario() -> None:
        store = FakeStore()
        coalescer = SubmitCoalescer(store)  # type: ignore[arg-type]
        small = [one() for _ in range(6)]
        big = [one(b"x" * 150), one()]
        await asyncio.gather(*(coalescer.submit(s) for s in small + big))
        assert [len(c) for c in store.commits] == [4, 3, 1]  # 4; 2 + the big one; the rest

    asyncio.run(scenario())


def test_an_outage_fails_the_whole_commit_and_the_next_one_goes_on() -> None:
    async def scenario() -> None:
        store = FakeStore()
        store.fail = StoreUnavailable("down")
        coalescer = SubmitCoalescer(store)  # type: ignore[arg-type]
        answers = await asyncio.gather(
            *(coalescer.submit(one()) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(a, StoreUnavailable) for a in answers)
        store.fail = None
        assert (await coalescer.submit(one())).queued_ms == 7

    asyncio.run(scenario())


def test_closing_cancels_the_waiting_submits() -> None:
    async def scenario() -> None:
        store = FakeStore(hold=True)
        coalescer = SubmitCoalescer(store)  # type: ignore[arg-type]
        waiting = [asyncio.ensure_future(coalescer.submit(one())) for _ in range(3)]
        await asyncio.wait_for(store.started.wait(), 5)
        waiting.append(asyncio.ensure_future(coalescer.submit(one())))
        await asyncio.sleep(0)
        await coalescer.close()
        done = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 5)
        assert all(isinstance(d, asyncio.CancelledError) for d in done)

    asyncio.run(scenario())


def test_a_large_payload_is_committed_alone_beside_the_commit_in_flight() -> None:
    async def scenario() -> None:
        store = FakeStore(hold=True)
        coalescer = SubmitCoalescer(store)  # type: ignore[arg-type]
        small = asyncio.ensure_future(coalescer.submit(one()))
        await asyncio.wait_for(store.started.wait(), 5)
        large = one(b"x" * (coalesce.ALONE_BYTES + 1))
        store.hold = False  # the large one's own commit returns at once
        answer = await asyncio.wait_for(coalescer.submit(large), 5)
        assert answer.task_ids == [large.tasks[0][0]] and not small.done()
        assert [len(c) for c in store.commits] == [1, 1]
        store.release.set()
        await asyncio.wait_for(small, 5)

    asyncio.run(scenario())
