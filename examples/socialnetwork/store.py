"""Where the app keeps its data: the few operations the services need, over Redis
(the default) or PostgreSQL with memcached in front of it (closer to the original's
MongoDB and memcached).

`open_store(url)` picks the backend by the URL's scheme:

    redis://HOST:PORT/DB                                   RedisStore
    postgresql://USER@HOST:PORT/DB?memcached=HOST:PORT     PostgresStore (memcached optional)

Both keep compose idempotent: a post is stored only if absent, and a timeline
holds a post once however often it is added.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import redis

if TYPE_CHECKING:
    import psycopg
    from pymemcache.client.base import PooledClient

Timeline = Literal["user", "home"]
"""A user's own posts ("user"), or those of whom they follow and that mention them ("home")."""
Follow = tuple[int, int]  # (follower, followee)
User = dict[str, str]  # username, first, last
Post = dict[str, Any]


class Store(Protocol):
    def add_user(self, user_id: int, username: str, first: str, last: str) -> bool:
        """Register; False if the username belongs to another id."""
        ...

    def user(self, user_id: int) -> User | None: ...

    def user_ids(self, usernames: Sequence[str]) -> list[int | None]:
        """The id of each username (None for no such user), in order."""
        ...

    def follow(self, pairs: Iterable[Follow]) -> None: ...

    def unfollow(self, pairs: Iterable[Follow]) -> None: ...

    def followers(self, user_id: int) -> list[int]: ...

    def add_urls(self, shortened: dict[str, str]) -> None:
        """Remember each short URL's expansion."""
        ...

    def add_post(self, post: Post) -> bool:
        """Store the post unless its id is there already (a re-run keeps the first)."""
        ...

    def posts(self, post_ids: Sequence[int]) -> list[Post]:
        """The posts found, in the order asked."""
        ...

    def add_to_timelines(
        self, kind: Timeline, user_ids: Iterable[int], post_id: int, timestamp: float
    ) -> None: ...

    def timeline(self, kind: Timeline, user_id: int, start: int, stop: int) -> list[int]:
        """Post ids newest first, positions start..stop-1."""
        ...

    def clear(self) -> None:
        """Remove all the app's data (tests, a fresh seed)."""
        ...

    def close(self) -> None: ...


def open_store(url: str) -> Store:
    scheme = urlsplit(url).scheme
    if scheme in ("redis", "rediss", "unix"):
        return RedisStore(redis.Redis.from_url(url))
    if scheme in ("postgresql", "postgres"):
        return PostgresStore(url)
    raise ValueError(f"no app store for {scheme}:// (expected redis:// or postgresql://)")


# -- Redis ------------------------------------------------------------------------------


_STORE_IF_ABSENT = """
if redis.call('exists', KEYS[1]) == 1 then return 0 end
redis.call('hset', KEYS[1], unpack(ARGV))
return 1
"""


class RedisStore:
    """Users as hashes (`user:ID`) with a `username:NAME` index, the social graph as
    sets (`followers:ID`, `following:ID`), posts as hashes of JSON fields (`post:ID`),
    timelines as sorted sets scored by time (`user-timeline:ID`, `home-timeline:ID`),
    short URLs in the hash `urls`."""

    def __init__(self, db: redis.Redis) -> None:
        self.db = db

    def add_user(self, user_id: int, username: str, first: str, last: str) -> bool:
        if not self.db.set(f"username:{username}", user_id, nx=True):
            return int(self.db.get(f"username:{username}") or -1) == user_id
        user = {"username": username, "first": first, "last": last}
        self.db.hset(f"user:{user_id}", mapping=user)
        return True

    def user(self, user_id: int) -> User | None:
        found = self.db.hgetall(f"user:{user_id}")
        return {k.decode(): v.decode() for k, v in found.items()} if found else None

    def user_ids(self, usernames: Sequence[str]) -> list[int | None]:
        ids = self.db.mget([f"username:{name}" for name in usernames]) if usernames else []
        return [None if i is None else int(i) for i in ids]

    def follow(self, pairs: Iterable[Follow]) -> None:
        with self.db.pipeline() as pipe:
            for follower, followee in pairs:
                pipe.sadd(f"following:{follower}", followee).sadd(f"followers:{followee}", follower)
            pipe.execute()

    def unfollow(self, pairs: Iterable[Follow]) -> None:
        with self.db.pipeline() as pipe:
            for follower, followee in pairs:
                pipe.srem(f"following:{follower}", followee).srem(f"followers:{followee}", follower)
            pipe.execute()

    def followers(self, user_id: int) -> list[int]:
        return [int(f) for f in self.db.smembers(f"followers:{user_id}")]

    def add_urls(self, shortened: dict[str, str]) -> None:
        if shortened:
            self.db.hset("urls", mapping=shortened)

    def add_post(self, post: Post) -> bool:
        # One Lua script: "if absent, store" cannot interleave with a re-run's.
        fields = [x for k, v in post.items() for x in (k, json.dumps(v))]
        return bool(self.db.eval(_STORE_IF_ABSENT, 1, f"post:{post['post_id']}", *fields))

    def posts(self, post_ids: Sequence[int]) -> list[Post]:
        with self.db.pipeline(transaction=False) as pipe:
            for post_id in post_ids:
                pipe.hgetall(f"post:{post_id}")
            found = pipe.execute()
        return [{k.decode(): json.loads(v) for k, v in post.items()} for post in found if post]

    def add_to_timelines(
        self, kind: Timeline, user_ids: Iterable[int], post_id: int, timestamp: float
    ) -> None:
        with self.db.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.zadd(f"{kind}-timeline:{user_id}", {str(post_id): timestamp})
            pipe.execute()

    def timeline(self, kind: Timeline, user_id: int, start: int, stop: int) -> list[int]:
        return [int(i) for i in self.db.zrevrange(f"{kind}-timeline:{user_id}", start, stop - 1)]

    def clear(self) -> None:
        self.db.flushdb()

    def close(self) -> None:
        self.db.close()


# -- PostgreSQL and memcached -----------------------------------------------------------


_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id bigint PRIMARY KEY,
    username text NOT NULL UNIQUE,
    first_name text NOT NULL,
    last_name text NOT NULL
);
CREATE TABLE IF NOT EXISTS follows (
    follower bigint NOT NULL,
    followee bigint NOT NULL,
    PRIMARY KEY (follower, followee)
);
CREATE INDEX IF NOT EXISTS follows_by_followee ON follows (followee, follower);
CREATE TABLE IF NOT EXISTS posts (
    post_id bigint PRIMARY KEY,
    creator_id bigint NOT NULL,
    ts double precision NOT NULL,
    body jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS urls (
    shortened text PRIMARY KEY,
    expanded text NOT NULL
);
"""
_TIMELINE_SCHEMA = """
CREATE TABLE IF NOT EXISTS {kind}_timeline (
    user_id bigint NOT NULL,
    post_id bigint NOT NULL,
    ts double precision NOT NULL,
    PRIMARY KEY (user_id, post_id)
);
CREATE INDEX IF NOT EXISTS {kind}_timeline_newest
    ON {kind}_timeline (user_id, ts DESC, post_id DESC);
"""
_TIMELINES: tuple[Timeline, ...] = ("user", "home")
_SCHEMA_LOCK = 0x50C1A1  # an advisory lock: slots that start together create the tables once


class PostgresStore:
    """Tables with primary keys (users, follows, posts, urls, and a table per kind of
    timeline keyed by (user_id, post_id) with an index for newest-first reads); every
    insert is ON CONFLICT DO NOTHING, so a re-run adds nothing. Users and posts are read
    through memcached when the URL names one (`?memcached=HOST:PORT`), cache-aside as
    the original: a read tries memcached, falls back to PostgreSQL and fills the cache."""

    def __init__(self, url: str) -> None:
        import psycopg  # only this backend needs the driver

        conninfo, memcached = _split_memcached(url)
        # Autocommit: each statement is its own transaction, and the connection can be
        # shared by threads (psycopg serialises them) as the seeder does.
        self.db: psycopg.Connection[Any] = psycopg.connect(conninfo, autocommit=True)
        self.cache = _Cache(memcached)
        created = self.db.execute("SELECT to_regclass('home_timeline')").fetchone()
        if created is None or created[0] is None:  # the first store on this database
            with self.db.transaction():
                self.db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                self.db.execute(_SCHEMA)
                for kind in _TIMELINES:  # the last table made: see the check above
                    self.db.execute(_TIMELINE_SCHEMA.format(kind=kind))

    def add_user(self, user_id: int, username: str, first: str, last: str) -> bool:
        inserted = self.db.execute(
            "INSERT INTO users VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING user_id",
            (user_id, username, first, last),
        ).fetchone()
        if inserted is None:  # taken: by this id (a re-run) or by another
            return self.user_ids([username]) == [user_id]
        return True

    def user(self, user_id: int) -> User | None:
        key = f"user:{user_id}"
        if (cached := self.cache.get_many([key]).get(key)) is not None:
            return json.loads(cached)
        row = self.db.execute(
            "SELECT username, first_name, last_name FROM users WHERE user_id = %s", (user_id,)
        ).fetchone()
        if row is None:
            return None  # not cached: the user may register later
        found = {"username": row[0], "first": row[1], "last": row[2]}
        self.cache.set_many({key: json.dumps(found)})
        return found

    def user_ids(self, usernames: Sequence[str]) -> list[int | None]:
        keys = {name: "username:" + quote(name, safe="") for name in usernames}
        cached = self.cache.get_many(list(keys.values()))
        ids = {name: int(cached[key]) for name, key in keys.items() if key in cached}
        missing = [name for name in usernames if name not in ids]
        if missing:
            rows = self.db.execute(
                "SELECT username, user_id FROM users WHERE username = ANY(%s)", (missing,)
            ).fetchall()
            ids.update(rows)
            self.cache.set_many({keys[name]: str(user_id) for name, user_id in rows})
        return [ids.get(name) for name in usernames]

    def follow(self, pairs: Iterable[Follow]) -> None:
        # unnest: one statement however many pairs (the seeder sends them all at once)
        followers, followees = _columns(pairs, 2)
        self.db.execute(
            "INSERT INTO follows SELECT * FROM unnest(%s::bigint[], %s::bigint[])"
            " ON CONFLICT DO NOTHING",
            (followers, followees),
        )

    def unfollow(self, pairs: Iterable[Follow]) -> None:
        followers, followees = _columns(pairs, 2)
        self.db.execute(
            "DELETE FROM follows WHERE (follower, followee) IN"
            " (SELECT * FROM unnest(%s::bigint[], %s::bigint[]))",
            (followers, followees),
        )

    def followers(self, user_id: int) -> list[int]:
        rows = self.db.execute("SELECT follower FROM follows WHERE followee = %s", (user_id,))
        return [follower for (follower,) in rows]

    def add_urls(self, shortened: dict[str, str]) -> None:
        if shortened:
            self.db.execute(
                "INSERT INTO urls SELECT * FROM unnest(%s::text[], %s::text[])"
                " ON CONFLICT DO NOTHING",
                (list(shortened), list(shortened.values())),
            )

    def add_post(self, post: Post) -> bool:
        from psycopg.types.json import Jsonb

        inserted = self.db.execute(
            "INSERT INTO posts VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING post_id",
            (post["post_id"], post["creator"]["user_id"], post["timestamp"], Jsonb(post)),
        ).fetchone()
        if inserted is not None:  # posts never change: the stored one may be cached now
            self.cache.set_many({f"post:{post['post_id']}": json.dumps(post)})
        return inserted is not None

    def posts(self, post_ids: Sequence[int]) -> list[Post]:
        keys = [f"post:{post_id}" for post_id in post_ids]
        cached = self.cache.get_many(keys)
        found = {int(key[5:]): json.loads(value) for key, value in cached.items()}
        missing = [post_id for post_id in post_ids if post_id not in found]
        if missing:
            rows = self.db.execute(
                "SELECT post_id, body FROM posts WHERE post_id = ANY(%s)", (missing,)
            ).fetchall()
            found.update(rows)
            self.cache.set_many({f"post:{i}": json.dumps(body) for i, body in rows})
        return [found[post_id] for post_id in post_ids if post_id in found]

    def add_to_timelines(
        self, kind: Timeline, user_ids: Iterable[int], post_id: int, timestamp: float
    ) -> None:
        self.db.execute(
            f"INSERT INTO {_table(kind)} SELECT unnest(%s::bigint[]), %s, %s"
            " ON CONFLICT DO NOTHING",
            (list(user_ids), post_id, timestamp),
        )

    def timeline(self, kind: Timeline, user_id: int, start: int, stop: int) -> list[int]:
        rows = self.db.execute(
            f"SELECT post_id FROM {_table(kind)} WHERE user_id = %s"
            " ORDER BY ts DESC, post_id DESC OFFSET %s LIMIT %s",
            (user_id, start, max(stop - start, 0)),
        )
        return [post_id for (post_id,) in rows]

    def clear(self) -> None:
        tables = ["users", "follows", "posts", "urls", *map(_table, _TIMELINES)]
        self.db.execute(f"TRUNCATE {', '.join(tables)}")
        self.cache.flush()

    def close(self) -> None:
        self.cache.close()
        self.db.close()


def _table(kind: Timeline) -> str:
    if kind not in _TIMELINES:  # the name goes into SQL text: only ours
        raise ValueError(f"no timeline {kind!r}")
    return f"{kind}_timeline"


def _columns(rows: Iterable[tuple[int, ...]], width: int) -> list[list[int]]:
    columns: list[list[int]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


def _split_memcached(url: str) -> tuple[str, str | None]:
    """The PostgreSQL URL without its `memcached` parameter (libpq refuses unknown
    ones), and that parameter's HOST:PORT."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    memcached = [value for key, value in query if key == "memcached"]
    rest = urlencode([(key, value) for key, value in query if key != "memcached"])
    return urlunsplit(parts._replace(query=rest)), (memcached[-1] if memcached else None)


class _Cache:
    """memcached through pymemcache, or nothing (every read a miss) without an address."""

    def __init__(self, address: str | None) -> None:
        self.client: PooledClient | None = None
        if address:
            from pymemcache.client.base import PooledClient

            host, _, port = address.rpartition(":")
            # Pooled: thread-safe, as the store is shared by the seeder's threads.
            self.client = PooledClient(
                (host, int(port)), connect_timeout=2, timeout=2, no_delay=True, max_pool_size=8
            )

    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        return self.client.get_many(keys) if self.client and keys else {}

    def set_many(self, values: dict[str, str]) -> None:
        if self.client and values:
            self.client.set_many(values, noreply=False)

    def flush(self) -> None:
        if self.client:
            self.client.flush_all(noreply=False)

    def close(self) -> None:
        if self.client:
            self.client.close()
