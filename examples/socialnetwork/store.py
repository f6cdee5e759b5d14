"""Where the app keeps its data: the few operations the services need, so that
the services do not depend on one database. `open_store(url)` picks the backend by
the URL's scheme:

    redis://HOST:PORT/DB                                   RedisStore

A store keeps compose idempotent: a post is stored only if absent, and a timeline
holds a post once however often it is added.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import redis

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
    raise ValueError(f"no app store for {scheme}:// (expected redis://)")


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
