"""Single submits that arrive together are committed together.

A single submit (`POST /v1/tasks`, its binary form, `POST /execute_function`) hands
its `Submission` to `SubmitCoalescer.submit` and waits for its own answer. One commit
is in flight at a time: a submit that finds none starts one, which runs at the next
turn of the event loop, so the requests that arrived in the same tick join it and a
lone submit waits for no timer; submits that arrive while a commit is in flight go in
the next one, sent as soon as it returns. Under load the commits grow by themselves
(group commit), and a commit is one round trip: `Store.submit_many`, where submits of
one function with the same options are one call of submit.lua, as one batch is.

Each submit is still answered only once Redis has it, and on its own: an unknown
function, a quota or an idempotency refusal is that request's error, not its
neighbours' (see `Store.submit_many`).
"""

from __future__ import annotations

import asyncio
import contextlib

from common.store import Store, Submission, Submitted
from gateway import metrics

MAX_SUBMISSIONS = 1000
"""Most submits one commit carries; more wait for the next."""
MAX_BYTES = 4 * 2**20
"""Payload bytes beyond which a commit takes no more submits (at least one goes)."""
ALONE_BYTES = 64 * 1024
"""A submit with a larger payload is committed on its own at once, beside the commit in
flight: its cost is its bytes, which sharing saves nothing of, and small submits
queued behind its upload would wait for it."""

_Waiting = tuple[Submission, "asyncio.Future[Submitted]"]


class SubmitCoalescer:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: list[_Waiting] = []
        self._committer: asyncio.Task[None] | None = None

    async def submit(self, submission: Submission) -> Submitted:
        """Commit `submission` with whatever arrives with it; its own answer or error."""
        if sum(len(payload) for _, payload in submission.tasks) > ALONE_BYTES:
            (answer,) = await self._store.submit_many([submission])
            metrics.SUBMIT_COMMITS.inc()
            if isinstance(answer, Exception):
                raise answer
            return answer
        future: asyncio.Future[Submitted] = asyncio.get_running_loop().create_future()
        self._pending.append((submission, future))
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit(), name="submit-coalescer")
        return await future

    async def _commit(self) -> None:
        batch: list[_Waiting] = []
        try:
            while self._pending:
                batch = self._take()
                try:
                    answers: list[Submitted | Exception] = await self._store.submit_many(
                        [s for s, _ in batch]
                    )
                except Exception as exc:  # an outage is everyone's in the commit
                    answers = [exc] * len(batch)
                else:
                    metrics.SUBMIT_COMMITS.inc()
                for (_, future), answer in zip(batch, answers, strict=True):
                    if future.done():  # its request went away; the task is stored all the same
                        continue
                    if isinstance(answer, Exception):
                        future.set_exception(answer)
                    else:
                        future.set_result(answer)
                batch = []
        finally:  # cancelled (the app stops): nobody may wait for ever
            self._committer = None
            for _, future in batch + self._pending:
                future.cancel()
            self._pending = []

    def _take(self) -> list[_Waiting]:
        """The pending submits the next commit carries, oldest first, within the caps."""
        size = 0
        count = 0
        for submission, _ in self._pending:
            if count == MAX_SUBMISSIONS or (count and size > MAX_BYTES):
                break
            size += sum(len(payload) for _, payload in submission.tasks)
            count += 1
        batch, self._pending = self._pending[:count], self._pending[count:]
        return batch

    async def close(self) -> None:
        if self._committer is not None:
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
