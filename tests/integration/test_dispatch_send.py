"""A worker found gone while a dispatch pass sends to it (the ROUTER's EHOSTUNREACH):
what the pass was sending goes back to the backlog at the same attempt, and what the
worker held from earlier passes goes back to the queue. Real Redis and the real
dispatch pass; the router is a stand-in, since a real one refuses a send only when it
races a worker's disconnect."""

from __future__ import annotations

import errno
import time
import uuid

import zmq

from common.models import DispatchMode
from common.store import Store
from dispatcher.core import Dispatcher
from dispatcher.settings import DispatcherSettings
from tests.integration.test_store import new_function, run


class Router:
    def __init__(self) -> None:
        self.sent: list[list[bytes]] = []
        self.gone: set[bytes] = set()

    def send(self, frames: list[bytes]) -> None:
        if frames[0] in self.gone:
            raise zmq.ZMQError(errno.EHOSTUNREACH)
        self.sent.append(frames)


def test_a_worker_gone_mid_pass_loses_nothing_and_spends_no_attempt(redis_url: str) -> None:
    async def scenario(store: Store) -> None:
        function_id = await new_function(store)
        tasks = [(str(uuid.uuid4()), b"args") for _ in range(2)]
        await store.submit(function_id, tasks, deadline_s=5, max_attempts=3)
        held, sending = await store.read_queue(count=10, block_ms=100)
        dispatcher = Dispatcher(DispatcherSettings(mode=DispatchMode.PULL), store)
        router = dispatcher._router = Router()  # type: ignore[assignment]
        worker = dispatcher.registry.add(b"w1", slots=2, now=time.monotonic())
        worker.batches = True
        dispatcher.registry.grant(worker, 2)
        # Given a worker holding one task
        await dispatcher._dispatch([held])
        assert len(router.sent) == 1 and set(worker.tasks) == {held.task_id}
        # When it is gone by the next pass's send
        router.gone.add(b"w1")
        await dispatcher._dispatch([sending])
        # Then it is forgotten, the task being sent waits in the backlog at its attempt,
        # and the one it held is back in the queue
        assert b"w1" not in dispatcher.registry.workers
        assert list(dispatcher._backlog) == [sending]
        (again,) = await store.read_queue(count=10, block_ms=100)
        assert again.task_id == held.task_id
        dispatcher._context.term()

    run(redis_url, scenario)
