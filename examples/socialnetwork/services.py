"""The social network's services, after DeathStarBench's socialNetwork: each is a
plain function of an `App` and plain, picklable arguments.

Data in the app's own store (`store.py`): Redis by default, or PostgreSQL with
memcached in front, chosen by the store's URL.

compose_post fans out over three levels, as the original does (11 calls):

    compose_post -> unique_id, compose_text -> (url_shorten, user_mention), media, creator,
                    store_post, write_user_timeline, write_home_timeline -> followers

Compose is idempotent, so that a task run again (a worker killed mid-call) adds
nothing: the post id derives from the client's request id, the post is stored
only if absent, and a timeline holds a post id once.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from typing import Any, Protocol

from examples.socialnetwork.store import Store, Timeline


class Pending(Protocol):
    def result(self) -> Any: ...


class App(Protocol):
    """What a service sees: the app's store and the other services."""

    store: Store

    def call(self, service: str, *args: Any) -> Any: ...

    def spawn(self, service: str, *args: Any) -> Pending:
        """Start a call; its value comes from `.result()` (calls run concurrently)."""
        ...


_URL = re.compile(r"https?://\S+")
_MENTION = re.compile(r"@(\w+)")
SHORT_PREFIX = "http://short-url/"


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


# -- users and the social graph ---------------------------------------------------------


def register_user(app: App, user_id: int, username: str, first: str = "", last: str = "") -> bool:
    """False if the username is taken (by another id)."""
    return app.store.add_user(user_id, username, first, last)


def follow(app: App, follower: int, followee: int) -> None:
    app.store.follow([(follower, followee)])


def unfollow(app: App, follower: int, followee: int) -> None:
    app.store.unfollow([(follower, followee)])


def followers(app: App, user_id: int) -> list[int]:
    return app.store.followers(user_id)


# -- compose-post and its leaves --------------------------------------------------------


def unique_id(app: App, request_id: str) -> int:
    """A 63-bit post id from the client's request id: the same request, the same post."""
    return int.from_bytes(_digest(request_id)[:8], "big") >> 1


def url_shorten(app: App, urls: list[str]) -> list[dict[str, str]]:
    pairs = [{"expanded": u, "shortened": SHORT_PREFIX + _digest(u).hex()[:10]} for u in urls]
    app.store.add_urls({p["shortened"]: p["expanded"] for p in pairs})
    return pairs


def user_mention(app: App, usernames: list[str]) -> list[dict[str, Any]]:
    ids = app.store.user_ids(usernames) if usernames else []
    return [
        {"user_id": i, "username": name}
        for name, i in zip(usernames, ids, strict=True)
        if i is not None
    ]


def compose_text(app: App, text: str) -> dict[str, Any]:
    """The text with its URLs shortened, and the users it mentions."""
    urls = app.spawn("url_shorten", _URL.findall(text))
    mentions = app.spawn("user_mention", sorted(set(_MENTION.findall(text))))
    shortened = urls.result()
    for pair in shortened:
        text = text.replace(pair["expanded"], pair["shortened"])
    return {"text": text, "urls": shortened, "mentions": mentions.result()}


def media(app: App, media_ids: list[int], media_types: list[str]) -> list[dict[str, Any]]:
    return [{"media_id": i, "type": t} for i, t in zip(media_ids, media_types, strict=True)]


def creator(app: App, user_id: int) -> dict[str, Any]:
    user = app.store.user(user_id)
    if user is None:
        raise ValueError(f"no user {user_id}")
    return {"user_id": user_id, "username": user["username"]}


def store_post(app: App, post: dict[str, Any]) -> bool:
    """Store the post unless it is there already (a re-run keeps the first)."""
    return app.store.add_post(post)


def write_user_timeline(app: App, user_id: int, post_id: int, timestamp: float) -> None:
    app.store.add_to_timelines("user", [user_id], post_id, timestamp)


def write_home_timeline(
    app: App, user_id: int, post_id: int, timestamp: float, mentioned: list[int]
) -> int:
    """Add the post to the home timelines of the creator's followers and of the
    users it mentions; how many timelines."""
    readers = set(app.call("followers", user_id)) | set(mentioned)
    if readers:
        app.store.add_to_timelines("home", readers, post_id, timestamp)
    return len(readers)


def compose_post(
    app: App,
    request_id: str,
    user_id: int,
    text: str,
    media_ids: list[int] = (),  # type: ignore[assignment]
    media_types: list[str] = (),  # type: ignore[assignment]
) -> int:
    """Compose and publish a post; its id. The same request_id again adds nothing."""
    post_id = app.spawn("unique_id", request_id)
    content = app.spawn("compose_text", text)
    attached = app.spawn("media", list(media_ids), list(media_types))
    author = app.spawn("creator", user_id)
    post = {
        "post_id": post_id.result(),
        "creator": author.result(),
        "media": attached.result(),
        "timestamp": time.time(),
        **content.result(),
    }
    mentioned = [m["user_id"] for m in post["mentions"]]
    writes = [
        app.spawn("store_post", post),
        app.spawn("write_user_timeline", user_id, post["post_id"], post["timestamp"]),
        app.spawn("write_home_timeline", user_id, post["post_id"], post["timestamp"], mentioned),
    ]
    for write in writes:
        write.result()
    return post["post_id"]


# -- reads ------------------------------------------------------------------------------


def read_posts(app: App, post_ids: list[int]) -> list[dict[str, Any]]:
    return app.store.posts(post_ids)


def _read_timeline(
    app: App, kind: Timeline, user_id: int, start: int, stop: int
) -> list[dict[str, Any]]:
    ids = app.store.timeline(kind, user_id, start, stop)
    return app.call("read_posts", ids) if ids else []


def read_user_timeline(app: App, user_id: int, start: int = 0, stop: int = 10) -> list[dict]:
    """The user's own posts, newest first."""
    return _read_timeline(app, "user", user_id, start, stop)


def read_home_timeline(app: App, user_id: int, start: int = 0, stop: int = 10) -> list[dict]:
    """Posts of the users this user follows, and posts that mention this user."""
    return _read_timeline(app, "home", user_id, start, stop)


SERVICES: dict[str, Callable[..., Any]] = {
    fn.__name__: fn
    for fn in (
        register_user, follow, unfollow, followers, unique_id, url_shorten, user_mention,
        compose_text, media, creator, store_post, write_user_timeline, write_home_timeline,
        compose_post, read_posts, read_user_timeline, read_home_timeline,
    )
}  # fmt: skip

CALLEES: dict[str, tuple[str, ...]] = {
    "compose_text": ("url_shorten", "user_mention"),
    "write_home_timeline": ("followers",),
    "compose_post": (
        "unique_id",
        "compose_text",
        "media",
        "creator",
        "store_post",
        "write_user_timeline",
        "write_home_timeline",
    ),
    "read_user_timeline": ("read_posts",),
    "read_home_timeline": ("read_posts",),
}
"""Who calls whom: registration follows it leaves first, so each service's
registration can name the functions it calls."""
