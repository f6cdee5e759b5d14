"""A thousand concurrent long-polls are all answered: waiting holds no Redis
connection, and the burst of reads at their start queues for the connection pool
instead of failing with "Too many connections"."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
import userfuncs

from common.models import DispatchMode
from faas.platform import LocalPlatform
from tests.conftest import make_platform, register, serialize


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    tmp = tmp_path_factory.mktemp("gateway-long-polls")
    # Ten connections, and a call waits at most 10 s for one: if a waiting long-poll held
    # a connection, the eleventh would fail while the tasks (12 s) still run. The burst
    # of 1,000 first reads is bound by the gateway's CPU, not by the pool: on a loaded
    # 2-core machine it took over 4 s (a 4 s pool timeout failed one read in 1,000).
    env = {"FAAS_REDIS_MAX_CONNECTIONS": "10", "FAAS_REDIS_POOL_TIMEOUT_S": "10"}
    with make_platform(tmp, DispatchMode.LOCAL, slots=4, env=env) as platform:
        yield platform


@pytest.fixture(scope="module")
def http(gateway: LocalPlatform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=60) as client:
        yield client


def test_a_thousand_concurrent_long_polls_all_complete(
    gateway: LocalPlatform, http: httpx.Client
) -> None:
    """Each long-poll waits on the completion subscription, not on a Redis connection;
    the burst of reads at their start queues for the pool instead of failing."""
    function_id = register(http, userfuncs.nap)
    body = {"function_id": function_id, "payload": serialize(((12,), {}))}
    task_ids = [http.post("/execute_function", json=body).json()["task_id"] for _ in range(4)]

    async def poll_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60, limits=limits) as client:
            gate = asyncio.Semaphore(1000)

            async def poll(task_id: str) -> httpx.Response:
                async with gate:
                    return await client.get(f"/result/{task_id}", params={"wait": 30})

            return await asyncio.gather(*(poll(task_ids[i % 4]) for i in range(1000)))

    responses = asyncio.run(poll_all())
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 1000, {s: statuses.count(s) for s in set(statuses)}
    assert all(r.json()["status"] == "COMPLETED" for r in responses)
