"""The social-network example (examples/socialnetwork) on real redis-servers: its
own for the app's data, and the platform's; and on the optional PostgreSQL and
memcached backend where their binaries and drivers are installed. Posts reach every
follower's and every mentioned user's home timeline in each wiring and backend;
composes survive a worker kill -9 exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import make_platform

from common.models import DispatchMode
from examples.socialnetwork import load, seed, services
from examples.socialnetwork.appstore import app_postgres_memcached, app_redis, postgres_unavailable
from examples.socialnetwork.store import PostgresStore, RedisStore, Store, open_store
from examples.socialnetwork.wiring import VARIANTS, LocalApp, deploy, nested_unavailable
from faas.client import Client, Task
from faas.platform import LocalPlatform, Process

Call = Callable[..., Any]


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp, app_redis(Path(tmp)) as url:
        yield url


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    if reason := postgres_unavailable():
        pytest.skip(reason)
    with app_postgres_memcached() as url:
        yield url


@pytest.fixture(params=["redis", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The app store's URL, of each backend."""
    return request.getfixturevalue("app_url" if request.param == "redis" else "postgres_url")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    # A compose over http holds up to 7 slots at once (parents wait for children).
    tmp = tmp_path_factory.mktemp("socialnet")
    with make_platform(tmp, DispatchMode.LOCAL, slots=8) as platform, Client(platform.url) as c:
        yield c


def in_process(store: Store) -> Call:
    return LocalApp(store).call


def on_platform(client: Client, variant: str, url: str) -> Call:
    if variant in ("nested", "inline") and (reason := nested_unavailable(client)):
        pytest.skip(reason)
    functions = deploy(client, variant, url)  # type: ignore[arg-type]
    return lambda service, *args: functions[service](*args)


def publish_scenario(call: Call, store: Store, first_id: int) -> None:
    """Users first_id.. : b and c follow a; a's post mentions e; d follows nobody."""
    store.clear()
    a, b, c, d, e = range(first_id, first_id + 5)
    for user in (a, b, c, d, e):
        assert call("register_user", user, f"u{user}")
    call("follow", b, a)
    call("follow", c, a)
    text = f"hello @u{e} and @nobody, see https://example.org/deathstar"
    post_id = call("compose_post", "request-1", a, text, [7], ["png"])

    [post] = call("read_user_timeline", a)
    assert post["post_id"] == post_id
    assert post["creator"] == {"user_id": a, "username": f"u{a}"}
    assert post["mentions"] == [{"user_id": e, "username": f"u{e}"}]
    assert post["media"] == [{"media_id": 7, "type": "png"}]
    assert "https://example.org" not in post["text"] and services.SHORT_PREFIX in post["text"]
    for reader in (b, c, e):
        assert [p["post_id"] for p in call("read_home_timeline", reader)] == [post_id]
    assert call("read_home_timeline", d) == []

    # The same request again adds nothing; an unfollowed user no longer receives posts.
    assert call("compose_post", "request-1", a, text, [7], ["png"]) == post_id
    call("unfollow", c, a)
    second = call("compose_post", "request-2", a, "second", [], [])
    assert [p["post_id"] for p in call("read_user_timeline", a)] == [second, post_id]
    assert [p["post_id"] for p in call("read_home_timeline", b)] == [second, post_id]
    assert [p["post_id"] for p in call("read_home_timeline", c)] == [post_id]
    assert store.timeline("home", e, 0, 100) == [post_id]


def test_in_process_posts_reach_followers_and_mentioned_users(store_url: str) -> None:
    with contextlib.closing(open_store(store_url)) as store:
        publish_scenario(in_process(store), store, first_id=1)


@pytest.mark.parametrize(
    ("variant", "store_url"),
    # PostgreSQL in the two wirings that differ most (one task; every call a task):
    # its part is the store, which every wiring reaches the same way.
    [(v, "redis") for v in VARIANTS] + [("local", "postgres"), ("nested", "postgres")],
    indirect=["store_url"],
)
def test_on_the_platform_posts_reach_followers_and_mentioned_users(
    client: Client, store_url: str, variant: str
) -> None:
    call = on_platform(client, variant, store_url)
    with contextlib.closing(open_store(store_url)) as store:
        publish_scenario(call, store, first_id=100)


def test_postgres_reads_go_through_memcached(postgres_url: str) -> None:
    with contextlib.closing(open_store(postgres_url)) as store:
        assert isinstance(store, PostgresStore)
        store.clear()
        assert store.add_user(1, "ann", "Ann", "A") and store.add_user(2, "bob", "Bob", "B")
        post = {"post_id": 7, "creator": {"user_id": 1, "username": "ann"}, "timestamp": 1.5}
        assert store.add_post(post) and not store.add_post({**post, "timestamp": 2.5})
        assert store.user(1) == {"username": "ann", "first": "Ann", "last": "A"}  # fills
        assert store.user_ids(["bob", "nobody"]) == [2, None]  # fills bob's
        # Rows gone from PostgreSQL behind the cache's back: the reads come from memcached
        store.db.execute("DELETE FROM users")
        store.db.execute("DELETE FROM posts")
        assert store.posts([7, 8]) == [post]  # cached when stored
        assert store.user(1)["username"] == "ann"
        assert store.user_ids(["bob", "nobody"]) == [2, None]
        assert store.user(2) is None  # never read, so never cached


def test_the_seeded_graph_has_the_shape_of_reed98() -> None:
    graph = seed.social_graph()
    degrees: dict[int, int] = {}
    for a, b in graph:
        assert a != b
        degrees[a] = degrees.get(a, 0) + 1
        degrees[b] = degrees.get(b, 0) + 1
    assert len(set(graph)) == seed.EDGES and len(degrees) == seed.USERS
    assert 39 <= 2 * len(graph) / len(degrees) <= 39.2
    ranked = sorted(degrees.values())
    assert ranked[-1] > 5 * ranked[len(ranked) // 2]  # heavy-tailed: hubs of hundreds
    assert seed.social_graph() == graph  # seeded: the same graph every run


def kill_a_worker_running_a_compose(
    platform: LocalPlatform, client: Client, tasks: list[Task]
) -> Process:
    """SIGKILL the process group of a worker while it runs one of the latest `tasks`.
    Every worker is frozen first (SIGSTOP, with its slots), so that no compose can end
    meanwhile: what a worker was sent, before or while frozen, shows RUNNING on it 20 ms
    after its send (with no prefetch). One such worker is killed, the others thawed.
    Freezing one worker at a time could miss: composes are short, and under load the
    others could run the rest of the load while one was being looked at."""
    workers = {w["worker_id"]: platform.worker_ids[w["worker_id"]] for w in client.workers()}
    for process in workers.values():
        process.signal(signal.SIGSTOP)
    victim = None
    try:
        deadline = time.monotonic() + 60
        while victim is None and time.monotonic() < deadline:
            for view in [task.info() for task in tasks[-40:]]:
                if view["status"] == "RUNNING" and view["worker_id"] in workers:
                    victim = workers[view["worker_id"]]
                    victim.kill()
                    break
    finally:
        for process in workers.values():
            if process is not victim:
                process.signal(signal.SIGCONT)
    assert victim is not None, "no worker was seen running a compose"
    return victim


# Not inline: like local, a compose is then one task, and local covers that.
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "inline"])
def test_composes_survive_a_worker_killed_with_sigkill_exactly_once(
    tmp_path: Path, variant: str
) -> None:
    users, total = 30, {"local": 160, "http": 40, "nested": 160}[variant]
    # Over http a compose holds up to 7 slots while it waits: keep the parents few
    # enough that their children always find a free slot on the surviving worker.
    # Nested, a waiting slot is lent to a spare, and new composes wait for a base slot
    # (spares run children only), so more composes in flight only queue.
    in_flight = {"local": 32, "http": 1, "nested": 32}[variant]
    with (
        app_redis(tmp_path / "app") as url,
        # No prefetch: a compose a slot took from prefetch shows RUNNING only once its
        # worker reports it, which a frozen worker never does (test_prefetch covers kills
        # of prefetching workers).
        make_platform(tmp_path, DispatchMode.PULL, workers=2, slots=8, prefetch=0) as platform,
        Client(platform.url) as client,
    ):
        if variant in ("nested", "inline") and (reason := nested_unavailable(client)):
            pytest.skip(reason)
        seed.seed(url, users=users, edges=60, posts_per_user=0)
        compose = deploy(client, variant, url)["compose_post"]  # type: ignore[arg-type]
        requests = [
            (f"req-{i}", 1 + i % users, f"post {i} @user_{1 + i * 7 % users}") for i in range(total)
        ]
        tasks: list[Task] = []
        quarter_done = threading.Event()

        def load() -> list[Any]:
            """Keep `in_flight` composes submitted until all are; their values."""
            pending: list[Task] = []
            done = []
            for request in requests:
                tasks.append(compose.submit(*request, [], [], idempotency_key=request[0]))
                pending.append(tasks[-1])
                while len(pending) >= in_flight or (pending and request is requests[-1]):
                    done.append(pending.pop(0).result(timeout=120))
                    if len(done) == total // 4:
                        quarter_done.set()
            return done

        with ThreadPoolExecutor(1) as pool:
            loader = pool.submit(load)
            # When, a quarter of the way in, the process group of a worker running a
            # compose is killed with SIGKILL
            assert quarter_done.wait(120), "the composes do not progress"
            victim = kill_a_worker_running_a_compose(platform, client, tasks)
            done = loader.result(timeout=300)
        # Then every accepted compose completed, and is in its creator's timeline once
        assert len(done) == total
        db = redis.Redis.from_url(url)
        app = LocalApp(RedisStore(db))
        for request_id, user, _ in requests:
            post_id = app.call("unique_id", request_id)
            assert db.zscore(f"user-timeline:{user}", post_id) is not None, request_id
            for follower in app.call("followers", user):
                assert db.zscore(f"home-timeline:{follower}", post_id) is not None
        per_user = {u: sum(1 for _, c, _ in requests if c == u) for u in range(1, users + 1)}
        assert {u: db.zcard(f"user-timeline:{u}") for u in per_user} == per_user
        assert len(db.keys("post:*")) == total
        assert not victim.alive()
        retried = sum(task.info()["attempt"] > 1 for task in tasks)
        print(f"{retried} composes ran again after the kill")
        assert retried, "the kill hit no compose: the test proved nothing"


def test_the_open_loop_generator_offers_its_rate_and_measures_every_request(
    client: Client, app_url: str
) -> None:
    redis.Redis.from_url(app_url).flushdb()
    seed.seed(app_url, users=20, edges=40, posts_per_user=1)
    ids = {name: fn.id for name, fn in deploy(client, "local", app_url).items()}
    requests = load.Requests(20, random.Random(3))
    bodies = (load.task_body(ids, requests.workload("mix")) for _ in iter(int, 1))
    port = int(client.url.rsplit(":", 1)[1])
    result = asyncio.run(load.open_loop(port, bodies.__next__, 40, 0.5, 3, random.Random(4)))
    # About 120 Poisson arrivals in the measured window, every one answered and timed
    assert 80 <= result["offered"] <= 160, result
    assert result["ok"] == result["offered"] == result["n"], result
    assert result["failed"] == result["unsent"] == result["unfinished"] == 0
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert 0.5 * 40 < result["achieved_rps"] < 1.5 * 40
