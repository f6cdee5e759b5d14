"""Tenants (real gateway, dispatcher, slots and redis-server): each API key is a
tenant's; one tenant's functions, tasks and idempotency keys do not exist for
another; a tenant's unfinished tasks are capped (429, nothing stored) and counted
back down on every way a task ends; and two tenants' code never shares a slot."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import userfuncs

from common.models import DispatchMode
from common.tenants import new_key_line
from faas.platform import LocalPlatform
from tests.conftest import (
    deserialize,
    make_platform,
    register,
    serialize,
    wait_all,
    wait_result,
)

QUOTA = 3  # carol's own quota, set in the keys file
KEYS = {name: new_key_line(name) for name in ("alice", "bob", "carol")}
DEFAULT_KEY = "the-old-single-key"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    tmp: Path = tmp_path_factory.mktemp("gateway-tenants")
    lines = [KEYS["alice"][1], KEYS["bob"][1], f"{KEYS['carol'][1]}:{QUOTA}"]
    keys_file = tmp / "api-keys"
    keys_file.write_text("# tenant:sha256\n" + "\n".join(lines) + "\n")
    env = {"FAAS_API_KEYS_FILE": str(keys_file), "FAAS_API_KEY": DEFAULT_KEY}
    with make_platform(tmp, DispatchMode.LOCAL, slots=4, env=env) as running:
        yield running


def client(platform: LocalPlatform, tenant: str) -> httpx.Client:
    key = DEFAULT_KEY if tenant == "default" else KEYS[tenant][0]
    headers = {"authorization": f"Bearer {key}"}
    return httpx.Client(base_url=platform.url, timeout=60, headers=headers)


@pytest.fixture(scope="module")
def alice(platform: LocalPlatform) -> Iterator[httpx.Client]:
    with client(platform, "alice") as http:
        yield http


@pytest.fixture(scope="module")
def bob(platform: LocalPlatform) -> Iterator[httpx.Client]:
    with client(platform, "bob") as http:
        yield http


@pytest.fixture(scope="module")
def store(platform: LocalPlatform) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(platform.redis_url) as client:
        yield client


GOOD = serialize(((1,), {}))


def call(function_id: str, *args: object, **extra: object) -> dict:
    return {"function_id": function_id, "payload": serialize((args, {})), **extra}


def unfinished(store: redis.Redis, tenant: str) -> int:
    return int(store.hget("faas:unfinished", tenant) or 0)


def test_another_tenants_ids_answer_exactly_like_unknown_ones(
    alice: httpx.Client, bob: httpx.Client
) -> None:
    function_id = register(alice, userfuncs.double)
    task_id = alice.post("/execute_function", json=call(function_id, 21)).json()["task_id"]
    assert deserialize(wait_result(alice, task_id)["result"]) == 42

    unknown_task, unknown_fn = str(uuid.uuid4()), str(uuid.uuid4())
    for mine, unknown, paths in (
        (task_id, unknown_task, ["/status/{}", "/result/{}", "/result/{}?wait=0.2",
                                 "/v1/tasks/{}", "/v1/tasks/{}?wait=0.2"]),
        (function_id, unknown_fn, ["/v1/functions/{}"]),
    ):  # fmt: skip
        for path in paths:
            theirs = bob.get(path.format(mine))
            never = bob.get(path.format(unknown))
            assert theirs.status_code == never.status_code == 404, (path, theirs.text)
            assert theirs.json()["detail"] == never.json()["detail"].replace(unknown, mine)
            assert alice.get(path.format(mine)).status_code == 200
    waited = bob.post("/v1/tasks/wait", json={"task_ids": [task_id], "wait": 0.2})
    assert waited.status_code == 404 and waited.json()["detail"] == f"task {task_id} not found"

    # Bob can neither run nor delete Alice's function, nor see it listed.
    for path in ("/execute_function", "/v1/tasks"):
        response = bob.post(path, json=call(function_id, 1))
        assert response.status_code == 404, response.text
        assert response.json()["detail"] == f"function {function_id} not found"
    batch = bob.post("/v1/tasks/batch", json={"function_id": function_id, "payloads": [GOOD]})
    assert batch.status_code == 404, batch.text
    assert bob.delete(f"/v1/functions/{function_id}").status_code == 404
    assert function_id not in [f["function_id"] for f in bob.get("/v1/functions").json()]
    assert function_id in [f["function_id"] for f in alice.get("/v1/functions").json()]
    assert alice.get(f"/v1/functions/{function_id}").status_code == 200


def test_dependencies_are_each_tenants_own_tasks(alice: httpx.Client, bob: httpx.Client) -> None:
    """A future among the arguments must be the submitter's own task: another tenant's
    id is a 404 exactly like an unknown one, and nothing is stored."""
    alices, bobs = register(alice, userfuncs.double), register(bob, userfuncs.echo)
    task_id = alice.post("/execute_function", json=call(alices, 1)).json()["task_id"]
    unknown, listed = str(uuid.uuid4()), len(bob.get("/v1/tasks").json()["tasks"])
    for dep in (task_id, unknown):
        for path in ("/execute_function", "/v1/tasks"):
            response = bob.post(path, json={**call(bobs, 1), "depends_on": [dep]})
            assert response.status_code == 404, response.text
            assert response.json()["detail"] == f"task {dep} not found"
    bad = bob.post("/v1/tasks", json={**call(bobs, 1), "depends_on": ["not-a-uuid"]})
    assert bad.status_code == 400, bad.text
    too_many = bob.post("/v1/tasks", json={**call(bobs, 1), "depends_on": [unknown] * 1001})
    assert too_many.status_code == 422, too_many.text
    assert len(bob.get("/v1/tasks").json()["tasks"]) == listed
    mine = alice.post("/v1/tasks", json={**call(alices, 2), "depends_on": [task_id]})
    assert mine.status_code == 201, mine.text
    assert deserialize(wait_result(alice, mine.json()["task_id"])["result"]) == 4


def test_idempotency_keys_are_each_tenants_own(alice: httpx.Client, bob: httpx.Client) -> None:
    key = str(uuid.uuid4())
    alices, bobs = register(alice, userfuncs.double), register(bob, userfuncs.double)
    first = alice.post("/execute_function", json=call(alices, 1, idempotency_key=key))
    assert first.status_code == 201, first.text
    # The same key from Bob is a new request of Bob's, not Alice's task nor a conflict.
    other = bob.post("/execute_function", json=call(bobs, 2, idempotency_key=key))
    assert other.status_code == 201, other.text
    assert other.json()["task_id"] != first.json()["task_id"]
    again = bob.post("/execute_function", json=call(bobs, 2, idempotency_key=key))
    assert again.json()["task_id"] == other.json()["task_id"]
    # Within a tenant, a key reused for another request is still refused.
    conflict = alice.post("/execute_function", json=call(alices, 3, idempotency_key=key))
    assert conflict.status_code == 409, conflict.text
    assert deserialize(wait_result(alice, first.json()["task_id"])["result"]) == 2
    assert deserialize(wait_result(bob, other.json()["task_id"])["result"]) == 4


def test_the_quota_refuses_tasks_beyond_it_and_stores_nothing(
    platform: LocalPlatform, store: redis.Redis, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    blocked = serialize(((str(release),), {}))
    with client(platform, "carol") as carol:
        hold = register(carol, userfuncs.hold)
        held = carol.post("/v1/tasks/batch", json={"function_id": hold, "payloads": [blocked] * 2})
        third = carol.post("/execute_function", json={"function_id": hold, "payload": blocked})
        assert held.status_code == third.status_code == 201, (held.text, third.text)
        task_ids = [*held.json()["task_ids"], third.json()["task_id"]]
        assert unfinished(store, "carol") == QUOTA
        queued, tasks = store.xlen("faas:queue"), task_keys(store)

        for path, body in (
            ("/v1/tasks/batch", {"function_id": hold, "payloads": [GOOD, GOOD]}),
            ("/execute_function", call(hold, 1)),
            ("/execute_function", call(hold, 1, idempotency_key="k1")),
            ("/v1/tasks", call(hold, 1)),
        ):
            response = carol.post(path, json=body)
            assert response.status_code == 429, (path, response.text)
            assert "'carol' has 3 unfinished" in response.json()["detail"]
            assert (
                f"at most 3, so {len(body.get('payloads', [1]))} more" in response.json()["detail"]
            )
            assert response.headers["retry-after"]
        assert store.xlen("faas:queue") == queued
        assert task_keys(store) == tasks
        assert not store.exists("faas:idem:carol:k1")
        assert unfinished(store, "carol") == QUOTA

        with client(platform, "alice") as alice:  # Carol's quota is hers alone
            double = register(alice, userfuncs.double)
            task_id = alice.post("/execute_function", json=call(double, 1)).json()["task_id"]
            assert wait_result(alice, task_id)["status"] == "COMPLETED"

        release.touch()
        assert all(v["status"] == "COMPLETED" for v in wait_all(carol, task_ids).values())
        assert unfinished(store, "carol") == 0
        # The key refused over the quota was not kept: now it queues a task.
        again = carol.post("/execute_function", json=call(hold, str(release), idempotency_key="k1"))
        assert again.status_code == 201, again.text
        assert wait_result(carol, again.json()["task_id"])["status"] == "COMPLETED"
        assert unfinished(store, "carol") == 0


def task_keys(store: redis.Redis) -> int:
    return sum(1 for _ in store.scan_iter(match="faas:task:*", count=1000))


def test_every_way_a_task_ends_counts_it_down_once(
    platform: LocalPlatform, store: redis.Redis
) -> None:
    """The single FAAS_API_KEY is the `default` tenant's. A user error, a deadline, a
    worker lost with and without a retry: each ends its task and its count."""
    with client(platform, "default") as http:
        boom, nap, die = (register(http, f) for f in (userfuncs.boom, userfuncs.nap, userfuncs.die))
        task_ids = [
            http.post("/execute_function", json=call(boom, 1)).json()["task_id"],
            http.post("/execute_function", json=call(nap, 30, deadline_s=0.5)).json()["task_id"],
            http.post("/execute_function", json=call(die, 1, max_attempts=1)).json()["task_id"],
            http.post("/execute_function", json=call(die, 1, max_attempts=2)).json()["task_id"],
        ]
        views = wait_all(http, task_ids)
    kinds = [views[t]["error_kind"] for t in task_ids]
    assert kinds == ["user", "deadline", "worker_lost", "worker_lost"], views
    assert views[task_ids[3]]["attempt"] == 2  # re-queued once before it failed
    assert unfinished(store, "default") == 0


def test_two_tenants_never_share_a_slot_process(alice: httpx.Client, bob: httpx.Client) -> None:
    pids: dict[str, set[int]] = {"alice": set(), "bob": set()}
    functions = {"alice": register(alice, userfuncs.pid), "bob": register(bob, userfuncs.pid)}
    clients = {"alice": alice, "bob": bob}
    for _ in range(4):
        for tenant, http in clients.items():
            task_id = http.post("/execute_function", json=call(functions[tenant])).json()
            view = wait_result(http, task_id["task_id"])
            assert view["status"] == "COMPLETED", view
            pids[tenant].add(deserialize(view["result"]))
    assert pids["alice"] and pids["bob"] and not pids["alice"] & pids["bob"], pids


def test_a_key_not_in_the_file_is_refused(platform: LocalPlatform) -> None:
    with httpx.Client(base_url=platform.url, timeout=30) as http:
        assert http.get("/v1/functions").status_code == 401
        wrong = {"authorization": f"Bearer {KEYS['alice'][1]}"}  # the line is not the key
        assert http.get("/v1/functions", headers=wrong).status_code == 401
