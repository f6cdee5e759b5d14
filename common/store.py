"""All Redis access. Nothing else in the project builds a key or sends a command.

Key schema (``<p>`` is the settings' ``key_prefix``, ``faas`` by default):

``<p>:fn:<function_id>``   hash: ``name``, ``payload`` (raw pickle bytes), ``created_ms``,
                           ``env`` (msgpack ``[requirements, bundle digests]``, if any).
``<p>:bundle:<sha256>``    string: a code bundle (zip) functions' environments refer to;
                           content-addressed, so stored once however many use it.
``<p>:functions``          sorted set of function ids, scored by ``created_ms`` (listing).
``<p>:task:<task_id>``     hash: ``function_id``, ``status``, ``attempt`` (1-based, the
                           current one), ``max_attempts``, ``deadline_ms``, ``queued_ms``,
                           ``started_ms``, ``finished_ms``, ``worker``, ``error``,
                           ``error_kind``, ``result`` (raw pickle bytes). Expires
                           ``result_ttl_s`` after it ends.
``<p>:queue``              stream, the durable queue. One entry per attempt waiting or
                           running: ``t`` task_id, ``a`` attempt, ``f`` function_id,
                           ``d`` deadline_ms, ``p`` args payload (stored only here).
                           Consumer group ``dispatch``; the active dispatcher reads as
                           consumer ``dispatcher``, so its pending list (PEL) is exactly
                           the set of attempts it holds, found again after a crash.
                           An entry is acked and deleted in the same script that ends
                           or re-queues its task.
``<p>:idem:<key>``         string: ``<task_id> <digest>``, the task first submitted with that
                           idempotency key and a digest of that request.
``<p>:lease``              string: id of the active dispatcher, with a TTL it renews.
``<p>:lost-workers``       list of ``<worker_id> <ms>``: workers another component (the
                           Kubernetes controller) saw die; the dispatcher re-queues their
                           attempts at once, ignoring reports older than the worker's
                           latest registration.
``<p>:done``               pub/sub channel: when a task ends, a msgpack array of its id
                           and its hash's fields (``result`` only if small), so waiters
                           need not read it again.

State changes are Lua scripts in ``common/lua/`` (each documents its KEYS and ARGV):
submit (hash + queue entry in one step), start, finish and requeue (both fenced by the
attempt number, so a late result can never overwrite a terminal state).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import msgpack
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from common.errors import FunctionNotFound, IdempotencyConflict, StoreFull, StoreUnavailable
from common.models import (
    ErrorKind,
    FunctionCode,
    FunctionEnv,
    FunctionRecord,
    TaskRecord,
    TaskStatus,
)

GROUP = "dispatch"
CONSUMER = "dispatcher"

P = ParamSpec("P")
R = TypeVar("R")


def now_ms() -> int:
    return int(time.time() * 1000)


def _translate(exc: BaseException) -> StoreUnavailable | None:
    """The platform's error for a redis-py error, or None if it is not one we translate.
    The one place Redis failures become StoreUnavailable or StoreFull."""
    if isinstance(exc, redis_errors.OutOfMemoryError) or (
        # A write refused inside a Lua script arrives as a plain ResponseError.
        isinstance(exc, redis_errors.ResponseError) and "OOM command not allowed" in str(exc)
    ):
        return StoreFull(f"redis is full (maxmemory reached): {exc}")
    if isinstance(exc, (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)):
        return StoreUnavailable(f"redis unavailable: {exc}")
    return None


def _translated(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn redis-py's errors into the platform's (see `_translate`), once, here."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except (redis_errors.RedisError, OSError) as exc:
            translated = _translate(exc)
            if translated is None:
                raise
            raise translated from exc

    return wrapper


def _load_script(name: str, *, publishes: bool = False) -> str:
    lua = resources.files("common.lua")
    text = lua.joinpath(name).read_text()
    return lua.joinpath("publish_ended.lua").read_text() + text if publishes else text


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One attempt of a task as delivered by the queue."""

    entry_id: str
    task_id: str
    attempt: int
    function_id: str
    deadline_s: float
    payload: bytes


@dataclass(frozen=True, slots=True)
class Outcome:
    """The end of one attempt, as the dispatcher commits it."""

    task_id: str
    entry_id: str
    attempt: int
    status: TaskStatus
    result: bytes
    error: str = ""
    error_kind: ErrorKind | None = None


class Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.queue = f"{prefix}:queue"
        self.functions = f"{prefix}:functions"
        self.lease = f"{prefix}:lease"
        self.lost_workers = f"{prefix}:lost-workers"
        self.done_channel = f"{prefix}:done"

    def function(self, function_id: str) -> str:
        return f"{self.prefix}:fn:{function_id}"

    def task(self, task_id: str) -> str:
        return f"{self.prefix}:task:{task_id}"

    def idempotency(self, key: str) -> str:
        return f"{self.prefix}:idem:{key}"

    def bundle(self, digest: str) -> str:
        return f"{self.prefix}:bundle:{digest}"


# -- Redis users: each component may run only the commands it sends ----------------
#
# Declared next to the key schema: a new key or command in this module (or in a
# script in common/lua/, whose commands Redis checks against the caller's user too)
# must be added here for the components that use it. Workers and slots have no user.

COMPONENTS = ("gateway", "dispatcher", "controller")
ADMIN_USER = "admin"
"""Everything allowed; for operators and probes, never given to a component."""

# Every client: health checks, and running this module's scripts (redis-py sends
# EVALSHA, and SCRIPT EXISTS/LOAD when Redis does not know a script yet).
_BASE_COMMANDS = "ping eval evalsha script|load script|exists"

# component -> (commands, key patterns, pub/sub channels); `k` is a Keys with "*"
# standing for an id.
_Grant = tuple[str, tuple[str, ...], tuple[str, ...]]
_GRANTS: dict[str, Callable[[Keys], _Grant]] = {
    # register/list/delete functions, bundles, submit.lua, task reads, completions
    "gateway": lambda k: (
        "multi exec discard hset hmget hstrlen zadd zrange zrem del set get exists expire"
        " xadd subscribe unsubscribe",
        (k.function("*"), k.functions, k.bundle("*"), k.task("*"), k.idempotency("*"), k.queue),
        (k.done_channel,),
    ),
    # the queue (group, reads, start/finish/requeue.lua), code, lease, lost workers
    "dispatcher": lambda k: (
        "xgroup|create xreadgroup xack xdel xadd xrange hmget hset hgetall expire publish"
        " get set pexpire del blpop",
        (k.queue, k.task("*"), k.function("*"), k.bundle("*"), k.lease, k.lost_workers),
        (k.done_channel,),
    ),
    # queue depth for scaling, reports of lost worker pods
    "controller": lambda k: ("xlen xpending rpush", (k.queue, k.lost_workers), ()),
}


def redis_acl_lines(prefix: str, passwords: dict[str, str]) -> list[str]:
    """The lines of a Redis ACL file (`aclfile`) for `passwords` (user -> password;
    COMPONENTS and ADMIN_USER). Passwords are stored as SHA-256 hashes, so the file
    does not hold them. A client must log in: the default user has the admin's password."""
    keys = Keys(prefix)
    admin = "#" + hashlib.sha256(passwords[ADMIN_USER].encode()).hexdigest()
    # The default user gets the admin's password rather than `off`: Redis 7.0 replays
    # the append-only file's transactions with the default user's rights, and drops
    # them (NOPERM) after a restart if it has none.
    lines = [f"user default on {admin} ~* &* +@all"]
    for user, password in sorted(passwords.items()):
        secret = "#" + hashlib.sha256(password.encode()).hexdigest()
        if user == ADMIN_USER:
            lines.append(f"user {user} on {secret} ~* &* +@all")
            continue
        commands, patterns, channels = _GRANTS[user](keys)
        rules = [
            "on", secret, "resetkeys", "resetchannels", "-@all",
            *(f"+{c}" for c in f"{_BASE_COMMANDS} {commands}".split()),
            *(f"~{p}" for p in patterns), *(f"&{c}" for c in channels),
        ]  # fmt: skip
        lines.append(f"user {user} " + " ".join(rules))
    return lines


def new_redis_passwords() -> dict[str, str]:
    """A fresh password for each component and the admin (URL-safe)."""
    return {user: secrets.token_urlsafe(32) for user in (*COMPONENTS, ADMIN_USER)}


def redis_user_url(url: str, user: str, password: str) -> str:
    """`url` (redis://host:port/db) logged in as `user`."""
    parts = urlsplit(url)
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


# -- end of the Redis users ---------------------------------------------------------


_RENEW_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _text(value: bytes | None) -> str | None:
    return value.decode() if value else None


def _int(value: bytes | None) -> int | None:
    return int(value) if value else None


class Store:
    """Async access to the platform's Redis state (see the module docstring)."""

    inline_result_bytes = 64 * 1024
    """Results up to this size travel inside the completion message."""

    def __init__(self, client: aioredis.Redis, *, prefix: str, result_ttl_s: int = 86400) -> None:
        self.redis = client
        self.keys = Keys(prefix)
        self.result_ttl_s = result_ttl_s
        self._submit = client.register_script(_load_script("submit.lua"))
        self._start = client.register_script(_load_script("start.lua"))
        self._finish = client.register_script(_load_script("finish.lua", publishes=True))
        self._requeue = client.register_script(_load_script("requeue.lua", publishes=True))
        self._renew = client.register_script(_RENEW_LEASE)
        self._release = client.register_script(_RELEASE_LEASE)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str,
        result_ttl_s: int = 86400,
        max_connections: int = 100,
        pool_timeout_s: float = 20.0,
    ) -> Store:
        # A blocking pool: a burst of calls beyond max_connections waits for a
        # connection (up to pool_timeout_s) instead of failing with "Too many connections".
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=pool_timeout_s,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        return cls(aioredis.Redis.from_pool(pool), prefix=prefix, result_ttl_s=result_ttl_s)

    async def close(self) -> None:
        await self.redis.aclose()

    @_translated
    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    # -- functions ---------------------------------------------------------------

    @_translated
    async def register_function(
        self, function_id: str, name: str, payload: bytes, env: FunctionEnv | None = None
    ) -> None:
        created = now_ms()
        fields: dict[str, Any] = {"name": name, "payload": payload, "created_ms": created}
        if env:
            fields["env"] = msgpack.packb([list(env.requirements), list(env.bundles)])
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.function(function_id), mapping=fields)
            pipe.zadd(self.keys.functions, {function_id: created})
            await pipe.execute()

    @_translated
    async def get_function(self, function_id: str) -> FunctionRecord:
        name, created, size = await self.redis.eval(
            "local h = redis.call('HMGET', KEYS[1], 'name', 'created_ms')"
            " return {h[1], h[2], redis.call('HSTRLEN', KEYS[1], 'payload')}",
            1,
            self.keys.function(function_id),
        )
        if name is None:
            raise FunctionNotFound(function_id)
        return FunctionRecord(function_id, name.decode(), int(created), int(size))

    @_translated
    async def list_functions(self, *, limit: int = 1000) -> list[FunctionRecord]:
        ids = [raw.decode() for raw in await self.redis.zrange(self.keys.functions, 0, limit - 1)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for function_id in ids:
                pipe.hmget(self.keys.function(function_id), ["name", "created_ms"])
                pipe.hstrlen(self.keys.function(function_id), "payload")
            replies = await pipe.execute()
        return [
            FunctionRecord(function_id, name.decode(), int(created), int(size))
            for function_id, (name, created), size in zip(
                ids, replies[::2], replies[1::2], strict=True
            )
            if name is not None  # deleted meanwhile
        ]

    @_translated
    async def delete_function(self, function_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.function(function_id))
            pipe.zrem(self.keys.functions, function_id)
            deleted, _ = await pipe.execute()
        if not deleted:
            raise FunctionNotFound(function_id)

    @_translated
    async def function_code(self, function_ids: Iterable[str]) -> dict[str, FunctionCode | None]:
        ids = list(function_ids)
        async with self.redis.pipeline(transaction=False) as pipe:
            for function_id in ids:
                pipe.hmget(self.keys.function(function_id), ["payload", "env"])
            rows = await pipe.execute()
        code: dict[str, FunctionCode | None] = {}
        for function_id, (payload, env) in zip(ids, rows, strict=True):
            if payload is None:
                code[function_id] = None
                continue
            requirements, bundles = msgpack.unpackb(env) if env else ((), ())
            code[function_id] = FunctionCode(
                payload, FunctionEnv(tuple(requirements), tuple(bundles))
            )
        return code

    @_translated
    async def put_bundle(self, digest: str, data: bytes) -> None:
        """Store a code bundle under its SHA-256 (the caller computed it)."""
        await self.redis.set(self.keys.bundle(digest), data, nx=True)

    @_translated
    async def get_bundle(self, digest: str) -> bytes | None:
        return await self.redis.get(self.keys.bundle(digest))

    # -- submitting and reading tasks ----------------------------------------------

    @_translated
    async def submit(
        self,
        function_id: str,
        tasks: Sequence[tuple[str, bytes]],
        *,
        deadline_s: float,
        max_attempts: int,
        idempotency_key: str | None = None,
        idempotency_digest: str = "",
        idempotency_ttl_s: int = 86400,
    ) -> list[str]:
        """Queue (task_id, args payload) pairs atomically; returns the ids accepted.
        An idempotency key is bound to `idempotency_digest` (of the whole request): the
        key seen with another digest raises IdempotencyConflict."""
        if idempotency_key is not None and len(tasks) != 1:
            raise ValueError("an idempotency key goes with exactly one task")
        keys = [
            self.keys.queue,
            self.keys.function(function_id),
            self.keys.idempotency(idempotency_key or ""),
            *(self.keys.task(task_id) for task_id, _ in tasks),
        ]
        args: list[Any] = [
            function_id,
            now_ms(),
            int(deadline_s * 1000),
            max_attempts,
            idempotency_ttl_s if idempotency_key else 0,
            idempotency_digest,
        ]
        for task_id, payload in tasks:
            args += [task_id, payload]
        try:
            ids = await self._submit(keys=keys, args=args)
        except redis_errors.ResponseError as exc:
            if "NOFUNCTION" in str(exc):
                raise FunctionNotFound(function_id) from None
            if str(exc).startswith("IDEMCONFLICT") and idempotency_key is not None:
                raise IdempotencyConflict(idempotency_key, str(exc).split()[-1]) from None
            raise
        return [raw.decode() for raw in ids]

    _TASK_FIELDS = (
        "function_id", "status", "attempt", "max_attempts", "deadline_ms", "queued_ms",
        "started_ms", "finished_ms", "worker", "error", "error_kind",
    )  # fmt: skip

    @_translated
    async def get_tasks(
        self, task_ids: Sequence[str], *, with_result: bool = True
    ) -> list[TaskRecord | None]:
        fields = [*self._TASK_FIELDS, "result"] if with_result else list(self._TASK_FIELDS)
        async with self.redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.hmget(self.keys.task(task_id), fields)
            rows = await pipe.execute()
        return [
            _task_record(task_id, dict(zip(fields, row, strict=True)))
            for task_id, row in zip(task_ids, rows, strict=True)
        ]

    async def get_task(self, task_id: str, *, with_result: bool = True) -> TaskRecord | None:
        return (await self.get_tasks([task_id], with_result=with_result))[0]

    # -- the dispatcher's side ---------------------------------------------------------

    @_translated
    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.keys.queue, GROUP, id="0", mkstream=True)
        except redis_errors.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    @_translated
    async def read_queue(
        self, *, count: int, block_ms: int | None, pending: bool = False, after: str = "0"
    ) -> list[QueueEntry]:
        """Next `count` new entries (blocking up to block_ms), or with `pending` the
        entries this dispatcher consumer already holds after id `after` (its PEL)."""
        reply = await self.redis.xreadgroup(
            GROUP,
            CONSUMER,
            {self.keys.queue: after if pending else ">"},
            count=count,
            block=None if pending else block_ms,
        )
        entries = []
        for _stream, items in reply or []:
            for entry_id, fields in items:
                if not fields:  # in the PEL but deleted from the stream: nothing to run
                    await self.redis.xack(self.keys.queue, GROUP, entry_id)
                    continue
                entries.append(
                    QueueEntry(
                        entry_id=entry_id.decode(),
                        task_id=fields[b"t"].decode(),
                        attempt=int(fields[b"a"]),
                        function_id=fields[b"f"].decode(),
                        deadline_s=int(fields[b"d"]) / 1000,
                        payload=fields[b"p"],
                    )
                )
        return entries

    @_translated
    async def mark_started(self, started: Sequence[tuple[str, int, str]]) -> list[bool]:
        """(task_id, attempt, worker_id) triples: QUEUED -> RUNNING, fenced by attempt."""
        args: list[Any] = [now_ms()]
        for _task_id, attempt, worker_id in started:
            args += [attempt, worker_id]
        flags = await self._start(keys=[self.keys.task(t) for t, _, _ in started], args=args)
        return [bool(flag) for flag in flags]

    @_translated
    async def finish(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Commit outcomes in one round trip; False for each that was stale."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for o in outcomes:
                await self._finish(
                    keys=[self.keys.task(o.task_id), self.keys.queue],
                    args=[
                        GROUP,
                        o.entry_id,
                        o.attempt,
                        o.status.value,
                        o.result,
                        o.error,
                        o.error_kind.value if o.error_kind else "",
                        now_ms(),
                        self.result_ttl_s,
                        self.keys.done_channel,
                        o.task_id,
                        self.inline_result_bytes,
                    ],
                    client=pipe,
                )
            return [bool(flag) for flag in await pipe.execute()]

    @_translated
    async def requeue(
        self, entry: QueueEntry | tuple[str, str, int], *, error: str, failure: bytes
    ) -> str:
        """Give back a lost attempt; returns 'requeued', 'failed' or 'stale'."""
        if isinstance(entry, QueueEntry):
            entry = (entry.task_id, entry.entry_id, entry.attempt)
        task_id, entry_id, attempt = entry
        verdict = await self._requeue(
            keys=[self.keys.task(task_id), self.keys.queue],
            args=[
                GROUP,
                entry_id,
                attempt,
                now_ms(),
                error,
                failure,
                self.result_ttl_s,
                self.keys.done_channel,
                task_id,
                self.inline_result_bytes,
            ],
        )
        return verdict.decode()

    @_translated
    async def queue_depth(self) -> tuple[int, int]:
        """(queued, held by the dispatcher) attempts."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self.keys.queue)
            pipe.xpending(self.keys.queue, GROUP)
            try:
                length, pending = await pipe.execute()
            except redis_errors.ResponseError:  # no group yet: nothing was ever queued
                return 0, 0
        held = int(pending["pending"])
        return max(length - held, 0), held

    # -- lost workers reported from outside ---------------------------------------------

    @_translated
    async def report_lost_worker(self, worker_id: str) -> None:
        await self.redis.rpush(self.keys.lost_workers, f"{worker_id} {now_ms()}")

    @_translated
    async def next_lost_worker(self, *, timeout_s: float) -> tuple[str, int] | None:
        """(worker_id, reported at ms), waiting up to timeout_s for a report."""
        item = await self.redis.blpop([self.keys.lost_workers], timeout=timeout_s)
        if item is None:
            return None
        worker_id, _, reported = item[1].decode().rpartition(" ")
        return worker_id, int(reported)

    # -- the dispatcher lease ------------------------------------------------------------

    @_translated
    async def acquire_lease(self, holder: str, ttl_s: float) -> bool:
        return bool(await self.redis.set(self.keys.lease, holder, nx=True, px=int(ttl_s * 1000)))

    @_translated
    async def renew_lease(self, holder: str, ttl_s: float) -> bool:
        return bool(await self._renew(keys=[self.keys.lease], args=[holder, int(ttl_s * 1000)]))

    @_translated
    async def release_lease(self, holder: str) -> None:
        await self._release(keys=[self.keys.lease], args=[holder])

    @_translated
    async def lease_holder(self) -> str | None:
        return _text(await self.redis.get(self.keys.lease))

    async def completions(self) -> AsyncIterator[Ended | None]:
        """Tasks as they end. Yields None once subscribed: anything that ended before
        that moment was not seen, so waiters should look again. Raises
        StoreUnavailable when the subscription breaks."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.keys.done_channel)
            yield None
            while True:
                message = await pubsub.get_message(timeout=30.0)
                if message is not None and message["type"] == "message":
                    yield _ended(message["data"])
        except (redis_errors.RedisError, OSError) as exc:
            translated = _translate(exc)
            if translated is None:
                raise
            raise translated from exc
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()


@dataclass(frozen=True, slots=True)
class Ended:
    """A task that just ended, as published; `record` is None if its result was too
    large to travel in the message (read it from the store then)."""

    task_id: str
    record: TaskRecord | None


def _ended(data: bytes) -> Ended:
    items = msgpack.unpackb(data, raw=True)  # Lua strings arrive as msgpack str: keep bytes
    task_id = items[0].decode()
    fields = {items[i].decode(): items[i + 1] for i in range(1, len(items) - 1, 2)}
    record = _task_record(task_id, fields) if "result" in fields else None
    return Ended(task_id, record)


def _task_record(task_id: str, fields: dict[str, bytes | None]) -> TaskRecord | None:
    status = fields.get("status")
    if status is None:
        return None
    kind = _text(fields.get("error_kind"))
    return TaskRecord(
        task_id=task_id,
        function_id=_text(fields.get("function_id")) or "",
        status=TaskStatus(status.decode()),
        attempt=_int(fields.get("attempt")) or 1,
        max_attempts=_int(fields.get("max_attempts")) or 1,
        deadline_s=(_int(fields.get("deadline_ms")) or 0) / 1000,
        queued_at_ms=_int(fields.get("queued_ms")) or 0,
        started_at_ms=_int(fields.get("started_ms")),
        finished_at_ms=_int(fields.get("finished_ms")),
        worker_id=_text(fields.get("worker")),
        error=_text(fields.get("error")),
        error_kind=ErrorKind(kind) if kind else None,
        result=fields.get("result"),
    )
