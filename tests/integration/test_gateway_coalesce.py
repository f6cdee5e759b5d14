"""Single submits committed together (real redis-server): `Store.submit_many` answers
each submission as `submit` alone would, and the gateway's concurrent single submits
(JSON, binary and the course route) each get their own task or their own error."""

from __future__ import annotations

import asyncio
import base64
import pickle
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import userfuncs

from common.errors import (
    FunctionNotFound,
    IdempotencyConflict,
    QuotaExceeded,
    StoreUnavailable,
    TaskNotFound,
)
from common.models import DispatchMode, TaskStatus
from common.store import Store, Submission, Submitted
from common.tenants import new_key_line
from faas.platform import LocalPlatform
from tests.conftest import deserialize, make_platform, register, serialize, wait_all
from tests.integration.test_store import run


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


# -- the gateway: concurrent single submits through HTTP ---------------------------------

QUOTA = 5  # carol's, in the keys file
KEYS = {name: new_key_line(name) for name in ("alice", "carol")}
OCTET = "application/octet-stream"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    tmp = tmp_path_factory.mktemp("gateway-coalesce")
    keys_file = tmp / "api-keys"
    keys_file.write_text(f"{KEYS['alice'][1]}\n{KEYS['carol'][1]}:{QUOTA}\n")
    env = {"FAAS_API_KEYS_FILE": str(keys_file)}
    with make_platform(tmp, DispatchMode.LOCAL, slots=4, env=env) as running:
        yield running


def client(platform: LocalPlatform, tenant: str, **options: Any) -> Any:
    headers = {"authorization": f"Bearer {KEYS[tenant][0]}"}
    return httpx.Client(base_url=platform.url, timeout=60, headers=headers, **options)


def async_client(platform: LocalPlatform, tenant: str) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {KEYS[tenant][0]}"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    return httpx.AsyncClient(base_url=platform.url, timeout=60, headers=headers, limits=limits)


def commits(platform: LocalPlatform) -> float:
    text = httpx.get(f"{platform.url}/metrics", timeout=10).text
    (line,) = [x for x in text.splitlines() if x.startswith("faas_submit_commits_total ")]
    return float(line.split()[1])


async def post(http: httpx.AsyncClient, form: str, function_id: str, args: tuple,
               **options: Any) -> httpx.Response:  # fmt: skip
    """One single submit in one of its three forms."""
    if form == "binary":
        params = {"function_id": function_id, **options}
        return await http.post("/v1/tasks", params=params, content=pickle.dumps((args, {})),
                               headers={"content-type": OCTET})  # fmt: skip
    body = {"function_id": function_id, "payload": serialize((args, {})), **options}
    return await http.post("/v1/tasks" if form == "json" else "/execute_function", json=body)


FORMS = ("json", "binary", "course")


def test_many_concurrent_single_submits_make_distinct_tasks_that_all_run(
    platform: LocalPlatform,
) -> None:
    n = 300
    with client(platform, "alice") as http:
        double = register(http, userfuncs.double)
    before = commits(platform)

    async def submit_all() -> list[httpx.Response]:
        async with async_client(platform, "alice") as http:
            return await asyncio.gather(*(post(http, FORMS[i % 3], double, (i,)) for i in range(n)))

    responses = asyncio.run(submit_all())
    assert [r.status_code for r in responses] == [201] * n, [r.text for r in responses[:3]]
    task_ids = [r.json()["task_id"] for r in responses]
    assert len(set(task_ids)) == n
    used = commits(platform) - before
    assert 0 < used < n, f"{n} submits in {used} commits: none were coalesced"
    with client(platform, "alice") as http:
        views = wait_all(http, task_ids)
    results = [deserialize(views[t]["result"]) for t in task_ids]
    assert results == [2 * i for i in range(n)], "each task ran with its own argument"
    assert all(views[t]["status"] == "COMPLETED" and views[t]["attempt"] == 1 for t in task_ids)


def test_good_and_bad_submits_together_each_get_their_own_answer(
    platform: LocalPlatform,
) -> None:
    with client(platform, "alice") as http:
        double = register(http, userfuncs.double)
    unknown = str(uuid.uuid4())
    bad_pickle = base64.b64encode(b"not a pickle").decode()
    key = str(uuid.uuid4())
    # (form, function_id, args, options, status)
    plan: list[tuple[str, str, tuple, dict, int]] = []
    for form in FORMS:
        plan += [
            (form, double, (1,), {}, 201),
            (form, unknown, (1,), {}, 404),
            (form, "not-an-id", (1,), {}, 400),
            (form, double, (2,), {"max_attempts": 0}, 422),
            (form, double, (3,), {"deadline_s": 10**9}, 400),
            (form, double, (4,), {"idempotency_key": f"{key}-{form}"}, 201),
            (form, double, (5,), {}, 201),
            (form, double, (b"x" * 100_000,), {}, 201),  # large: committed on its own
        ]

    async def submit_all() -> list[httpx.Response]:
        async with async_client(platform, "alice") as http:
            calls = [post(http, form, fid, args, **options) for form, fid, args, options, _ in plan]
            bad = {"function_id": double, "payload": bad_pickle}
            calls += [http.post("/v1/tasks", json=bad), http.post("/execute_function", json=bad)]
            return await asyncio.gather(*calls)

    *responses, bad_json, bad_course = asyncio.run(submit_all())
    for (form, fid, args, options, status), response in zip(plan, responses, strict=True):
        assert response.status_code == status, (form, fid, args, options, response.text)
        if status == 404:
            assert response.json()["detail"] == f"function {unknown} not found"
    assert bad_json.status_code == bad_course.status_code == 400, bad_json.text
    accepted = {r.json()["task_id"]: args for (_, _, args, _, s), r in zip(plan, responses,
                strict=True) if s == 201}  # fmt: skip
    assert len(accepted) == 4 * len(FORMS)
    with client(platform, "alice") as http:
        views = wait_all(http, list(accepted))
    for task_id, (arg,) in accepted.items():
        assert deserialize(views[task_id]["result"]) == 2 * arg


def test_an_idempotency_key_under_concurrency_makes_one_task(platform: LocalPlatform) -> None:
    """The same request many times at once: one task, every answer names it; the key
    with other requests at once: one of them wins, the others are refused (409)."""
    with client(platform, "alice") as http:
        double = register(http, userfuncs.double)
    same, contested = str(uuid.uuid4()), str(uuid.uuid4())

    async def submit_all() -> tuple[list[httpx.Response], list[httpx.Response]]:
        async with async_client(platform, "alice") as http:
            repeats = [post(http, FORMS[i % 3], double, (7,), idempotency_key=same)
                       for i in range(30)]  # fmt: skip
            rivals = [post(http, FORMS[i % 3], double, (i,), idempotency_key=contested)
                      for i in range(30)]  # fmt: skip
            answers = await asyncio.gather(*repeats, *rivals)
            return answers[:30], answers[30:]

    repeats, rivals = asyncio.run(submit_all())
    assert {r.status_code for r in repeats} == {201}
    assert len({r.json()["task_id"] for r in repeats}) == 1
    won = [r for r in rivals if r.status_code == 201]
    assert len(won) == 1 and all(r.status_code == 409 for r in rivals if r not in won)
    winner = won[0].json()["task_id"]
    assert all(winner in r.json()["detail"] for r in rivals if r not in won)
    with client(platform, "alice") as http:
        views = wait_all(http, [repeats[0].json()["task_id"], winner])
    assert deserialize(views[repeats[0].json()["task_id"]]["result"]) == 14


def test_the_quota_under_concurrency_admits_exactly_what_fits(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    """Twelve single submits of a tenant with room for five, at once, with another
    tenant's submits among them: five are stored, seven refused (429, nothing stored),
    and the other tenant is not limited by her."""
    release = tmp_path / "release"
    with client(platform, "carol") as carol, client(platform, "alice") as alice:
        held, double = register(carol, userfuncs.hold), register(alice, userfuncs.double)
    with redis.Redis.from_url(platform.redis_url) as store:
        tasks_before = len(store.keys("faas:task:*"))

        async def submit_all() -> tuple[list[httpx.Response], list[httpx.Response]]:
            async with async_client(platform, "carol") as c, async_client(platform, "alice") as a:
                theirs = [post(c, FORMS[i % 3], held, (str(release),)) for i in range(12)]
                others = [post(a, FORMS[i % 3], double, (i,)) for i in range(12)]
                answers = await asyncio.gather(
                    *(x for pair in zip(theirs, others, strict=True) for x in pair)
                )
                return answers[::2], answers[1::2]

        carols, alices = asyncio.run(submit_all())
        assert sorted(r.status_code for r in carols) == [201] * QUOTA + [429] * (12 - QUOTA)
        assert all(r.headers["retry-after"] for r in carols if r.status_code == 429)
        assert [r.status_code for r in alices] == [201] * 12
        assert int(store.hget("faas:unfinished", "carol") or 0) == QUOTA
        assert len(store.keys("faas:task:*")) - tasks_before == QUOTA + 12
        release.touch()
        stored = [r.json()["task_id"] for r in carols if r.status_code == 201]
        with client(platform, "carol") as carol:
            views = wait_all(carol, stored)
        assert {v["status"] for v in views.values()} == {"COMPLETED"}
        with client(platform, "alice") as alice:
            wait_all(alice, [r.json()["task_id"] for r in alices])
        assert int(store.hget("faas:unfinished", "carol") or 0) == 0


def test_a_submit_answers_what_a_read_of_its_task_would(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    """`POST /v1/tasks` without `wait` answers the task as stored, not read back: it must
    be exactly what a read says while the task waits (every slot is held meanwhile)."""
    release, markers = tmp_path / "release", [tmp_path / f"running-{i}" for i in range(4)]
    with client(platform, "alice") as http:
        held = register(http, userfuncs.hold)
        holders = [post_sync(http, held, (str(release), str(m))) for m in markers]
        until_files(markers)
        double = register(http, userfuncs.double)
        options = {"deadline_s": 7.25, "max_attempts": 2, "result_ttl_s": 600}
        posted = post_sync(http, double, (21,), **options)
        view = posted.json()
        assert posted.status_code == 201 and view["status"] == "QUEUED", posted.text
        assert http.get(f"/v1/tasks/{view['task_id']}").json() == view
        binary = http.post("/v1/tasks", params={"function_id": double, **options},
                           content=pickle.dumps(((21,), {})),
                           headers={"content-type": OCTET, "accept": OCTET})  # fmt: skip
        assert binary.status_code == 201, binary.text
        task_id = binary.headers["x-faas-task-id"]
        read = http.get(f"/v1/tasks/{task_id}", headers={"accept": OCTET})
        faas = {k: v for k, v in binary.headers.items() if k.startswith("x-faas-")}
        assert faas == {k: v for k, v in read.headers.items() if k.startswith("x-faas-")}
        assert faas["x-faas-status"] == "QUEUED" and binary.content == read.content == b""
        release.touch()
        views = wait_all(http, [view["task_id"], task_id, *(h.json()["task_id"] for h in holders)])
        assert deserialize(views[task_id]["result"]) == 42


def post_sync(http: httpx.Client, function_id: str, args: tuple, **options: Any) -> httpx.Response:
    body = {"function_id": function_id, "payload": serialize((args, {})), **options}
    return http.post("/v1/tasks", json=body)


def until_files(paths: list[Path], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, f"not all of {paths} appeared in {timeout_s} s"
        time.sleep(0.01)
