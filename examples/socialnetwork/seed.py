"""`python -m examples.socialnetwork.seed --url URL`: fill the app's store with users,
a social graph and posts, through the services themselves (local wiring), the graph's
follows in batches.

DeathStarBench seeds its social network with socfb-Reed98 (962 users, 18,812
friendships, mean degree 39, heavy-tailed: most have a few dozen friends, a few
have hundreds). That file is not shipped; `social_graph` draws a graph of the
same size and shape instead: a Chung-Lu graph whose expected degrees follow a
power law (exponent 2.5) scaled to the same mean and capped at Reed98's largest
degree, from a seeded RNG, so every run builds the same graph.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import string
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from examples.socialnetwork.appstore import app_postgres_memcached, app_redis
from examples.socialnetwork.services import SERVICES
from examples.socialnetwork.store import open_store
from examples.socialnetwork.wiring import LocalApp

Backend = Literal["redis", "postgres"]
BACKENDS: tuple[Backend, ...] = ("redis", "postgres")
_FOLLOW_BATCH = 2000

USERS, EDGES, MAX_DEGREE = 962, 18_812, 313
_WORDS = [
    "faas",
    "redis",
    "latency",
    "tail",
    "queue",
    "slot",
    "worker",
    "graph",
    "post",
    "timeline",
    "cloud",
    "python",
    "open",
]


def username(user_id: int) -> str:
    return f"user_{user_id}"


def social_graph(users: int = USERS, edges: int = EDGES, seed: int = 1) -> list[tuple[int, int]]:
    """`edges` distinct undirected friendships between users 1..`users`."""
    if edges > users * (users - 1) // 2:
        raise ValueError(f"{users} users cannot have {edges} distinct friendships")
    rng = random.Random(seed)
    mean = 2 * edges / users
    weights = [(i + 1) ** (-1 / 1.5) for i in range(users)]  # power law, exponent 2.5
    for _ in range(5):  # scale to the mean degree, cap, scale again
        scale = mean * users / sum(weights)
        weights = [min(w * scale, MAX_DEGREE) for w in weights]
    ids = list(range(1, users + 1))
    found: set[tuple[int, int]] = set()
    while len(found) < edges:
        for a, b in zip(*(rng.choices(ids, weights, k=edges) for _ in range(2)), strict=True):
            if a != b and len(found) < edges:
                found.add((min(a, b), max(a, b)))
    return sorted(found)


def post_text(rng: random.Random, users: int) -> str:
    """A few words, sometimes a mention and a link, as DeathStar's workload writes."""
    words = rng.choices(_WORDS, k=rng.randint(5, 15))
    if rng.random() < 0.5:
        words.append("@" + username(rng.randint(1, users)))
    if rng.random() < 0.3:
        words.append("https://example.org/" + "".join(rng.choices(string.ascii_lowercase, k=12)))
    return " ".join(words)


def seed(
    store_url: str,
    users: int = USERS,
    edges: int = EDGES,
    posts_per_user: int = 10,
    rng_seed: int = 1,
) -> dict[str, Any]:
    """Register the users, make each friendship a follow both ways, compose the posts."""
    rng = random.Random(rng_seed)
    graph = social_graph(users, edges, rng_seed)
    started = time.monotonic()
    with contextlib.closing(open_store(store_url)) as store:
        app = LocalApp(store)
        for user_id in range(1, users + 1):
            name = username(user_id)
            SERVICES["register_user"](app, user_id, name, name.title(), "Seed")
        # The follows in batches, straight to the store (through the follow service:
        # a round trip for each of 37,624).
        follows = [(a, b) for a, b in graph] + [(b, a) for a, b in graph]
        for i in range(0, len(follows), _FOLLOW_BATCH):
            store.follow(follows[i : i + _FOLLOW_BATCH])
        with ThreadPoolExecutor(8) as pool:  # the calls wait on the store, not on the CPU
            posts = [
                (f"seed-{user_id}-{k}", user_id, post_text(rng, users), [k], ["png"])
                for user_id in range(1, users + 1)
                for k in range(posts_per_user)
            ]
            list(pool.map(lambda post: SERVICES["compose_post"](app, *post), posts))
    degrees = [0] * (users + 1)
    for a, b in graph:
        degrees[a] += 1
        degrees[b] += 1
    return {
        "users": users,
        "friendships": len(graph),
        "mean_degree": round(statistics.fmean(degrees[1:]), 1),
        "median_degree": statistics.median(degrees[1:]),
        "max_degree": max(degrees),
        "posts": users * posts_per_user,
        "seconds": round(time.monotonic() - started, 1),
    }


@contextlib.contextmanager
def throwaway_store(backend: Backend) -> Iterator[str]:
    """Start the app's servers for `backend` (stopped on exit); the store's URL."""
    if backend == "postgres":
        with app_postgres_memcached() as url:
            yield url
    else:
        with tempfile.TemporaryDirectory() as tmp, app_redis(Path(tmp)) as url:
            yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url", "--redis", dest="url",
        help="the app's store (not the platform's): redis://HOST:PORT/DB, or"
        " postgresql://USER@HOST:PORT/DB?memcached=HOST:PORT; without it, a throwaway"
        " server of --backend is started, seeded and stopped (to time the seed)",
    )  # fmt: skip
    parser.add_argument("--backend", choices=BACKENDS, default="redis")
    parser.add_argument("--users", type=int, default=USERS)
    parser.add_argument("--edges", type=int, default=EDGES)
    parser.add_argument("--posts-per-user", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1, help="RNG seed of the graph and posts")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(throwaway_store(args.backend))
        if not url.startswith("redis" if args.backend == "redis" else "postgres"):
            parser.error(f"--url {url.split(':')[0]}:// is not a {args.backend} URL")
        print(seed(url, args.users, args.edges, args.posts_per_user, args.seed))


if __name__ == "__main__":
    main()
