"""All Redis access. Nothing else in the project builds a key or sends a command.

Key schema (``<p>`` is the settings' ``key_prefix``, ``faas`` by default):

``<p>:fn:<function_id>``   hash: ``name``, ``tenant``, ``payload`` (raw pickle bytes),
                           ``created_ms``, ``env`` (msgpack ``[requirements, bundle
                           digests]``, if any), ``result_ttl_s`` and
                           ``expire_after_read`` (``1``) for its tasks, if set. No
                           ``tenant``: the ``default`` tenant's.
``<p>:bundle:<sha256>``    string: a code bundle (zip) functions' environments refer to;
                           content-addressed, so stored once however many use it.
``<p>:functions:<tenant>`` sorted set of a tenant's function ids, scored by ``created_ms``.
``<p>:name:<tenant>:<name>`` list of the function ids a tenant registered under a name,
                           oldest first: version N is the Nth; the name means the last.
``<p>:task:<task_id>``     hash, in one of two forms (`_task_record` reads both).
                           Open (WAITING, QUEUED, RUNNING): ``function_id``, ``tenant``,
                           ``status``, ``attempt`` (1-based, the current one),
                           ``max_attempts``, ``deadline_ms``, ``queued_ms``,
                           ``started_ms``, ``worker``, ``nested``, ``entry`` (id of its
                           current queue entry, for cancel), ``result_ttl_s`` and
                           ``expire_after_read`` if the task or its function set them.
                           A WAITING task (futures among its arguments) also holds
                           ``waiting`` (dependencies not ended), ``payload`` (its args
                           until it is queued), ``deps`` (dependency ids,
                           comma-separated) and ``depth``.
                           Retained (ended; written by close_task in
                           publish_ended.lua, which documents it): ``h`` (msgpack of the
                           fixed-size fields), ``w`` its worker's number, ``r`` result
                           (or ``o`` when it is kept apart in ``<p>:result:<task_id>``),
                           and ``n``, ``e``, ``k``, ``f`` only when not empty or default: few
                           and short enough values to stay a listpack (a no-op's
                           takes 168 bytes). Expires ``result_ttl_s`` after it ends
                           (the task's, else its function's, else the setting), or
                           the gateway's ``expire_after_read_s`` after a response
                           carried its result if it asked for that. Tasks an older
                           version ended keep the open form with ``finished_ms``,
                           ``error``, ``error_kind``, ``result``, ``result_apart``.
``<p>:deps:<task_id>``     set: the WAITING tasks that take this task's result as an
                           argument; released and deleted when it ends (dependents.lua).
``<p>:logs:<task_id>``     string: what the task printed (stdout and stderr), each
                           attempt's output after an ``--- attempt N ---`` line. Appended
                           by the dispatcher as chunks arrive; expires ``result_ttl_s``
                           after the last chunk, and with its task from the task's end.
``<p>:result:<task_id>``   string: a result kept apart from its task's hash (``o``): one
                           over 64 KiB (staged), or over 64 bytes when the rest of the
                           hash is short. Expires with its task.
``<p>:args:<task_id>``     string: arguments over 64 KiB, kept apart from the queue entry
                           (``P``) and a WAITING task's hash (empty ``payload``): SET
                           before submit.lua, which keeps or drops them; deleted when the
                           task ends.
``<p>:blob:<task_id>:<attempt>`` string: a large result staged by the dispatcher until
                           finish.lua renames it to ``<p>:result:<task_id>`` or drops it.
``<p>:queue``              stream, the durable queue. One entry per attempt waiting or
                           running: ``t`` task_id, ``a`` attempt, ``f`` function_id,
                           ``d`` deadline_ms, ``n`` tenant, ``p`` args payload (stored
                           only here) or ``P`` when it is kept apart in
                           ``<p>:args:<task_id>``, ``w`` the ids of its dependencies, if any.
                           Consumer group ``dispatch``; the active dispatcher reads as
                           consumer ``dispatcher``, so its pending list (PEL) is exactly
                           the set of attempts it holds, found again after a crash.
                           An entry is acked and deleted in the same script that ends
                           or re-queues its task.
``<p>:queue:nested``       stream, the same for calls made by running tasks (entries add
                           ``c``, the call depth). Read before the main queue: children
                           run before new top-level tasks, which bounds how many
                           parents wait.
``<p>:index:<tenant>``     stream, the listing index: one entry per task the tenant
                           submitted, ``u`` its id as 16 bytes (``i`` as text if it is
                           not a UUID), the entry id the time it was listed; kept by
                           submit.lua. Entries outlive their task (ids whose hash
                           expired are skipped and deleted when read) and are trimmed
                           after twice the result TTL setting. About 36 bytes a task.
``<p>:tasks:<tenant>``     sorted set, the index an older version kept (ids scored by
                           ``queued_ms``): listed after the stream, read only, set to
                           expire when first read.
``<p>:workers``            hash: ``i:<worker id>`` -> a number, ``n:<number>`` -> the
                           worker id, ``next``: the numbers retained tasks name their
                           worker by (worker_number in publish_ended.lua). Only grows.
``<p>:status``             string: the active dispatcher's view (msgpack: workers, their
                           slots and load, tasks ended per minute), rewritten every
                           heartbeat interval with a TTL of a few, so it vanishes with it.
``<p>:idem:<tenant>:<key>`` string: ``<task_id> <digest>``, the task the tenant first
                           submitted with that idempotency key, and a digest of that request.
``<p>:unfinished``         hash: tenant -> its queued + running tasks (the quota's count):
                           up in submit, down in the one script that ends each task.
``<p>:lease``              string: id of the active dispatcher, with a TTL it renews.
``<p>:lost-workers``       list of ``<worker_id> <ms>``: workers another component (the
                           Kubernetes controller) saw die; the dispatcher re-queues their
                           attempts at once, ignoring reports older than the worker's
                           latest registration.
``<p>:cancels``            list of task ids cancelled while QUEUED or RUNNING: the
                           dispatcher drops them from what it read ahead and has the
                           workers running them kill their attempts.
``<p>:done``               pub/sub channel: when a task ends, a msgpack array of its id
                           and its retained fields, with ``r`` the result if it is at
                           most 64 KiB, so waiters need not read it again.

State changes are Lua scripts in ``common/lua/`` (each documents its KEYS and ARGV):
submit (hash + queue entry in one step), start, finish and requeue (both fenced by the
attempt number, so a late result can never overwrite a terminal state), and cancel.
Every script that ends a task does so through `end_task` (publish_ended.lua); those
that read task hashes start with records.lua, which reads both forms.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import msgpack
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from common.errors import (
    FunctionNotFound,
    IdempotencyConflict,
    QuotaExceeded,
    StoreFull,
    StoreUnavailable,
    TaskNotFound,
)
from common.models import (
    DEFAULT_RETENTION,
    MAX_DEPENDENCIES,
    ErrorKind,
    FunctionCode,
    FunctionEnv,
    FunctionRecord,
    Retention,
    TaskRecord,
    TaskStatus,
)
from common.redis_connection import HiredisConnection
from common.tenants import DEFAULT_TENANT

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
    """The script `name` after the helpers that read task hashes; with `publishes`,
    also after those that end a task (and release the tasks waiting on it)."""
    lua = resources.files("common.lua")
    helpers = ("records.lua", *(("publish_ended.lua", "dependents.lua") if publishes else ()))
    return "".join(lua.joinpath(h).read_text() for h in (*helpers, name))


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One attempt of a task as delivered by the queue."""

    entry_id: str
    task_id: str
    attempt: int
    function_id: str
    deadline_s: float
    payload: bytes | None  # None: its arguments, kept apart, are gone
    tenant: str = DEFAULT_TENANT
    depth: int = 0  # 0: submitted from outside; n: called by a task at depth n - 1
    depends_on: tuple[str, ...] = ()  # tasks whose results are among its arguments


@dataclass(frozen=True, slots=True)
class Submission:
    """One submit request as `Store.submit` and `Store.submit_many` take it: (task_id,
    args payload) pairs of one function, with the options they share."""

    function_id: str
    tasks: Sequence[tuple[str, bytes]]
    deadline_s: float
    max_attempts: int
    tenant: str = DEFAULT_TENANT
    max_unfinished: int = 100_000
    idempotency_key: str | None = None
    idempotency_digest: str = ""
    idempotency_ttl_s: int = 86400
    depth: int = 0
    depends_on: Sequence[str] = ()
    retention: Retention = DEFAULT_RETENTION

    def merge_key(self) -> tuple[Any, ...] | None:
        """Submissions with equal keys can be one call of submit.lua, as one batch is:
        same function, tenant, quota and options; never with an idempotency key (bound
        to one task) or dependencies (each may wait, or fail, on its own)."""
        if self.idempotency_key is not None or self.depends_on:
            return None
        return (self.function_id, self.tenant, self.max_unfinished, self.depth,
                int(self.deadline_s * 1000), self.max_attempts, self.retention)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Submitted:
    """What a submission got: the task ids accepted (an earlier task's for a repeated
    idempotency key) and `queued_ms`, the time its new tasks were stored with."""

    task_ids: list[str]
    queued_ms: int


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
    depth: int = 0  # of the attempt's entry: which queue stream holds it
    # When and where the attempt started: recorded with the end when its start was
    # never written (the dispatcher defers start writes; a fast task ends first).
    started_ms: int = 0
    worker_id: str = ""


class Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.queue = f"{prefix}:queue"
        self.nested_queue = f"{prefix}:queue:nested"
        self.unfinished = f"{prefix}:unfinished"
        self.lease = f"{prefix}:lease"
        self.lost_workers = f"{prefix}:lost-workers"
        self.cancels = f"{prefix}:cancels"
        self.done_channel = f"{prefix}:done"
        self.status = f"{prefix}:status"
        self.workers = f"{prefix}:workers"  # numbers for worker ids (publish_ended.lua)

    def name(self, tenant: str, name: str) -> str:
        return f"{self.prefix}:name:{tenant}:{name}"

    def index(self, tenant: str) -> str:
        """The tenant's listing index (a stream; submit.lua adds to it)."""
        return f"{self.prefix}:index:{tenant}"

    def old_index(self, tenant: str) -> str:
        """The listing index an older version kept (a sorted set), read after `index`."""
        return f"{self.prefix}:tasks:{tenant}"

    def queue_of(self, depth: int) -> str:
        """The stream holding attempts of tasks at this call depth."""
        return self.nested_queue if depth else self.queue

    def function(self, function_id: str) -> str:
        return f"{self.prefix}:fn:{function_id}"

    def task(self, task_id: str) -> str:
        return f"{self.prefix}:task:{task_id}"

    def functions(self, tenant: str) -> str:
        return f"{self.prefix}:functions:{tenant}"

    def idempotency(self, tenant: str, key: str) -> str:
        return f"{self.prefix}:idem:{tenant}:{key}"

    def bundle(self, digest: str) -> str:
        return f"{self.prefix}:bundle:{digest}"

    def logs(self, task_id: str) -> str:
        return f"{self.prefix}:logs:{task_id}"

    def dependents(self, task_id: str) -> str:
        """The tasks WAITING on `task_id` (dependents.lua builds this key too)."""
        return f"{self.prefix}:deps:{task_id}"

    def blob(self, task_id: str, attempt: int | str) -> str:
        """A large result staged by the dispatcher until finish.lua takes or drops it."""
        return f"{self.prefix}:blob:{task_id}:{attempt}"

    def args(self, task_id: str) -> str:
        """Arguments kept apart from the queue entry (`P`); submit.lua and close_task
        build this key too."""
        return f"{self.prefix}:args:{task_id}"

    def result(self, task_id: str) -> str:
        """A result kept apart from its task's hash (field `o`, or `result_apart` in the
        open form); close_task builds this key too."""
        return f"{self.prefix}:result:{task_id}"


# -- Redis users: each component may run only the commands it sends ----------------
#
# Declared next to the key schema: a new key or command in this module (or in a
# script in common/lua/, whose commands Redis checks against the caller's user too)
# must be added here for the components that use it. Workers and slots have no user.

COMPONENTS = ("gateway", "dispatcher", "controller")
ADMIN_USER = "admin"
"""Everything allowed; for operators and probes, never given to a component."""

# Every client: health checks, and running this module's scripts (EVALSHA, and SCRIPT
# LOAD when Redis does not know one yet; SCRIPT EXISTS only for redis-py's own).
_BASE_COMMANDS = "ping eval evalsha script|load script|exists"

# component -> (commands, key patterns, pub/sub channels); `k` is a Keys with "*"
# standing for an id.
_Grant = tuple[str, tuple[str, ...], tuple[str, ...]]
_GRANTS: dict[str, Callable[[Keys], _Grant]] = {
    # functions and names, bundles, submit.lua, task reads and listings (and the
    # old index's), the status view, cancel.lua, task output, completions, shorter
    # TTLs once results are read
    "gateway": lambda k: (
        "multi exec discard hset hget hmget hgetall hstrlen hincrby hdel zadd zrange zrem"
        " zrevrangebyscore rpush lrange del set get exists expire persist xadd xack xdel xlen"
        " xpending xrevrange xtrim getrange strlen publish subscribe unsubscribe sadd smembers",
        (
            k.function("*"),
            k.functions("*"),
            k.name("*", "*"),
            k.bundle("*"),
            k.task("*"),
            k.workers,
            k.index("*"),
            k.old_index("*"),
            k.idempotency("*", "*"),
            k.queue,
            k.nested_queue,
            k.unfinished,
            k.status,
            k.cancels,
            k.logs("*"),
            k.dependents("*"),
            k.result("*"),
            k.args("*"),
        ),
        (k.done_channel,),
    ),
    # the queues (group, reads, start/finish/requeue.lua, nested calls through
    # submit.lua), code, lease, lost workers and cancels, the status view, task output,
    # large results (staged, then renamed by finish.lua)
    "dispatcher": lambda k: (
        "xgroup|create xreadgroup xack xdel xadd xrange xlen xpending xtrim hmget hset hget"
        " hgetall hstrlen hincrby hdel exists expire persist publish get mget set strlen"
        " pexpire del rename blpop lpop append rpush sadd smembers",
        (
            k.queue,
            k.nested_queue,
            k.task("*"),
            k.workers,
            k.function("*"),
            k.bundle("*"),
            k.lease,
            k.lost_workers,
            k.cancels,
            k.unfinished,
            k.status,
            k.index("*"),
            k.idempotency("*", "*"),
            k.logs("*"),
            k.dependents("*"),
            k.blob("*", "*"),
            k.result("*"),
            k.args("*"),
        ),
        (k.done_channel,),
    ),
    # queue depth for scaling, reports of lost worker pods
    "controller": lambda k: ("xlen xpending rpush", (k.queue, k.nested_queue, k.lost_workers), ()),
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
_DELETE_FUNCTION = """
local owner = redis.call('HGET', KEYS[1], 'tenant')
if not owner and redis.call('EXISTS', KEYS[1]) == 1 then
  owner = 'default'
end
if owner ~= ARGV[2] then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
"""
_FUNCTION_INFO = """
local h = redis.call('HMGET', KEYS[1], 'name', 'created_ms', 'tenant')
return {h[1], h[2], redis.call('HSTRLEN', KEYS[1], 'payload'), h[3]}
"""
_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class _Script:
    """A Lua script run by EVALSHA alone. redis-py's `register_script` sends SCRIPT
    EXISTS before every pipeline that runs a script: one more round trip per commit on
    the dispatcher's hot path. This one sends SCRIPT LOAD only when Redis answers
    NOSCRIPT (first use, or after a restart or SCRIPT FLUSH), then runs it again once."""

    def __init__(self, client: aioredis.Redis, text: str) -> None:
        self.client = client
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()  # what SCRIPT LOAD answers

    async def __call__(
        self, *, keys: Sequence[Any], args: Sequence[Any], client: Any = None
    ) -> Any:
        """Run it; with a pipeline as `client`, queue it there (run it with
        `Store._execute`, which handles NOSCRIPT)."""
        if client is not None:
            client.evalsha(self.sha, len(keys), *keys, *args)
            return None
        try:
            return await self.client.evalsha(self.sha, len(keys), *keys, *args)
        except redis_errors.NoScriptError:
            await self.load()
            return await self.client.evalsha(self.sha, len(keys), *keys, *args)

    async def load(self) -> None:
        await self.client.script_load(self.text)


def _text(value: bytes | None) -> str | None:
    return value.decode() if value else None


def _int(value: bytes | None) -> int | None:
    return int(value) if value else None


class Store:
    """Async access to the platform's Redis state (see the module docstring)."""

    inline_result_bytes = 64 * 1024
    """Results up to this size travel inside the completion message; larger ones are
    kept apart from the task's hash (see finish.lua) and read when asked for."""
    staged_ttl_s = 600
    """How long a staged result or argument outlives a pipeline that broke before its
    script ran."""
    args_apart_bytes = 64 * 1024
    """Arguments over this size are SET under their own key before submit.lua runs (see
    it), not passed to it: Redis keeps the bytes it read, where a script argument is
    copied into Lua and again into the stream (2 ms of Redis's time per MB, measured)."""

    def __init__(self, client: aioredis.Redis, *, prefix: str, result_ttl_s: int = 86400) -> None:
        self.redis = client
        self.keys = Keys(prefix)
        self.result_ttl_s = result_ttl_s
        self._workers: dict[bytes, bytes] = {}  # number -> worker id: they never change
        self._scripts: dict[str, _Script] = {}  # by sha, to load them again after NOSCRIPT
        self._submit = self._script(_load_script("submit.lua", publishes=True))
        self._start = self._script(_load_script("start.lua"))
        self._finish = self._script(_load_script("finish.lua", publishes=True))
        self._requeue = self._script(_load_script("requeue.lua", publishes=True))
        self._cancel = self._script(_load_script("cancel.lua", publishes=True))
        self._renew = self._script(_RENEW_LEASE)
        self._release = self._script(_RELEASE_LEASE)
        self._delete_function = self._script(_DELETE_FUNCTION)
        self._function_info = self._script(_FUNCTION_INFO)

    def _script(self, text: str) -> _Script:
        script = _Script(self.redis, text)
        self._scripts[script.sha] = script
        return script

    async def _execute(self, pipe: Any, *, raise_on_error: bool = True) -> list[Any]:
        """`pipe.execute()` for a pipeline that runs scripts: a script Redis does not
        know (NOSCRIPT) is loaded and that command alone runs again, once; the others
        already ran. Then the first error, if any, is raised as `execute` would (or,
        without `raise_on_error`, left in its place among the replies)."""
        stack = [args for args, _ in pipe.command_stack]
        replies = await pipe.execute(raise_on_error=False)
        loaded: set[str] = set()
        for i, reply in enumerate(replies):
            if isinstance(reply, redis_errors.NoScriptError):
                sha = str(stack[i][1])
                if sha not in loaded:
                    await self._scripts[sha].load()
                    loaded.add(sha)
                try:
                    replies[i] = await self.redis.execute_command(*stack[i])
                except redis_errors.ResponseError as exc:
                    replies[i] = exc
        if not raise_on_error:
            return replies
        for reply in replies:
            if isinstance(reply, redis_errors.ResponseError):
                raise reply
        return replies

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
        if pool.connection_class is aioredis.Connection:  # TCP (not TLS, not a unix socket)
            pool.connection_class = HiredisConnection
        return cls(aioredis.Redis.from_pool(pool), prefix=prefix, result_ttl_s=result_ttl_s)

    async def close(self) -> None:
        await self.redis.aclose()

    @_translated
    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    # -- functions ---------------------------------------------------------------

    @_translated
    async def register_function(
        self,
        function_id: str,
        name: str,
        payload: bytes,
        env: FunctionEnv | None = None,
        sources: Sequence[tuple[str, int, str]] = (),
        *,
        tenant: str = DEFAULT_TENANT,
        retention: Retention = DEFAULT_RETENTION,
    ) -> int:
        """Store a function; returns its version under `name` (1 for the first).
        `sources`: (file, first line, text) of the function's code, shown in the
        tracebacks of its tasks. `retention`: its tasks', unless they set their own."""
        created = now_ms()
        fields: dict[str, Any] = {
            "name": name, "tenant": tenant, "payload": payload, "created_ms": created,
        }  # fmt: skip
        if retention.result_ttl_s is not None:
            fields["result_ttl_s"] = retention.result_ttl_s
        if retention.expire_after_read is not None:
            fields["expire_after_read"] = int(retention.expire_after_read)
        if env:
            fields["env"] = msgpack.packb([list(env.requirements), list(env.bundles)])
        if sources:
            fields["sources"] = msgpack.packb([list(s) for s in sources])
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.function(function_id), mapping=fields)
            pipe.zadd(self.keys.functions(tenant), {function_id: created})
            pipe.rpush(self.keys.name(tenant, name), function_id)
            *_, version = await pipe.execute()
        return int(version)

    @_translated
    async def function_versions(self, name: str, *, tenant: str = DEFAULT_TENANT) -> list[str]:
        """The ids `tenant` registered under `name`, oldest first (version N at N-1)."""
        ids = await self.redis.lrange(self.keys.name(tenant, name), 0, -1)
        return [raw.decode() for raw in ids]

    @_translated
    async def get_function(
        self, function_id: str, *, tenant: str = DEFAULT_TENANT
    ) -> FunctionRecord:
        """The function if it exists and is `tenant`'s; else FunctionNotFound, the same
        for both, so another tenant's ids cannot be probed."""
        name, created, size, owner = await self._function_info(
            keys=[self.keys.function(function_id)], args=[]
        )
        if name is None or (_text(owner) or DEFAULT_TENANT) != tenant:
            raise FunctionNotFound(function_id)
        return FunctionRecord(function_id, name.decode(), int(created), int(size))

    @_translated
    async def list_functions(
        self, *, tenant: str = DEFAULT_TENANT, limit: int = 1000
    ) -> list[FunctionRecord]:
        key = self.keys.functions(tenant)
        ids = [raw.decode() for raw in await self.redis.zrange(key, 0, limit - 1)]
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
    async def delete_function(self, function_id: str, *, tenant: str = DEFAULT_TENANT) -> None:
        keys = [self.keys.function(function_id), self.keys.functions(tenant)]
        if not await self._delete_function(keys=keys, args=[function_id, tenant]):
            raise FunctionNotFound(function_id)

    @_translated
    async def function_code(self, function_ids: Iterable[str]) -> dict[str, FunctionCode | None]:
        ids = list(function_ids)
        async with self.redis.pipeline(transaction=False) as pipe:
            for function_id in ids:
                pipe.hmget(self.keys.function(function_id),
                           ["payload", "env", "sources", "tenant"])  # fmt: skip
            rows = await pipe.execute()
        code: dict[str, FunctionCode | None] = {}
        for function_id, (payload, env, sources, tenant) in zip(ids, rows, strict=True):
            if payload is None:
                code[function_id] = None
                continue
            requirements, bundles = msgpack.unpackb(env) if env else ((), ())
            code[function_id] = FunctionCode(
                payload,
                FunctionEnv(tuple(requirements), tuple(bundles)),
                sources or b"",
                tenant.decode() if tenant else DEFAULT_TENANT,
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
        tenant: str = DEFAULT_TENANT,
        max_unfinished: int = 100_000,
        depth: int = 0,
        depends_on: Sequence[str] = (),
        retention: Retention = DEFAULT_RETENTION,
    ) -> list[str]:
        """Queue (task_id, args payload) pairs of `tenant`'s function atomically;
        returns the ids accepted. An idempotency key (the tenant's own) is bound to
        `idempotency_digest` (of the whole request): the key seen with another digest
        raises IdempotencyConflict. QuotaExceeded, with nothing stored, if the tenant
        would have more than `max_unfinished` queued + running tasks. Tasks called by
        a running task (`depth` > 0) go to the nested queue; an id that exists already
        is not queued again (nor counted). With `depends_on` (the tenant's tasks whose
        results are among the arguments, at most MAX_DEPENDENCIES; else TaskNotFound),
        each task waits for them (WAITING) unless they have all completed already.
        `retention`: how long the tasks are kept once ended, where not their function's."""
        submission = Submission(
            function_id, tasks, deadline_s, max_attempts, tenant, max_unfinished,
            idempotency_key, idempotency_digest, idempotency_ttl_s, depth, depends_on, retention,
        )  # fmt: skip
        keys, args, apart = self._submit_call([submission], now_ms())
        try:
            if not apart:
                ids = await self._submit(keys=keys, args=args)
            else:
                async with self.redis.pipeline(transaction=False) as pipe:
                    self._stage_args(pipe, apart)
                    await self._submit(keys=keys, args=args, client=pipe)
                    ids = (await self._execute(pipe))[-1]
        except redis_errors.ResponseError as exc:
            raise self._submit_error(exc, submission) from None
        return [raw.decode() for raw in ids]

    @_translated
    async def submit_many(self, submissions: Sequence[Submission]) -> list[Submitted | Exception]:
        """Commit several submit requests in one round trip, each answered on its own
        exactly as `submit` would answer it alone, one after the other: an error (an
        unknown function, a quota or an idempotency refusal) is that submission's, and
        stores nothing of it. Submissions that `merge_key` allows go in one call of
        submit.lua, as one batch; a batch refused for the quota is tried again one
        submission at a time, since alone the first ones may fit. A store outage
        raises StoreUnavailable for all."""
        groups: dict[Any, list[int]] = {}
        for i, submission in enumerate(submissions):
            key = submission.merge_key()
            groups.setdefault(("alone", i) if key is None else key, []).append(i)
        answers: list[Submitted | Exception | None] = [None] * len(submissions)
        retry: list[list[int]] = []
        calls = list(groups.values())
        for members, reply, now in await self._submit_calls(submissions, calls):
            refused = isinstance(reply, redis_errors.ResponseError) and str(reply).startswith(
                "QUOTA"
            )
            if refused and len(members) > 1:
                retry += [[i] for i in members]
            else:
                self._answer(submissions, members, reply, now, answers)
        if retry:
            for members, reply, now in await self._submit_calls(submissions, retry):
                self._answer(submissions, members, reply, now, answers)
        return [a if a is not None else RuntimeError("unanswered") for a in answers]

    async def _submit_calls(
        self, submissions: Sequence[Submission], calls: list[list[int]]
    ) -> list[tuple[list[int], Any, int]]:
        """Run submit.lua once per call (the submissions it merges), pipelined:
        (members, reply or error, the time it stored)."""
        now = now_ms()
        replies: list[Any] = []
        sent: dict[int, int] = {}  # position in `replies` -> that script's in the pipeline
        commands = 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for members in calls:
                try:
                    keys, args, apart = self._submit_call([submissions[i] for i in members], now)
                except ValueError as exc:  # a request `submit` would refuse alone
                    replies.append(exc)
                    continue
                commands += self._stage_args(pipe, apart)
                await self._submit(keys=keys, args=args, client=pipe)
                sent[len(replies)] = commands
                commands += 1
                replies.append(None)
            if sent:
                results = await self._execute(pipe, raise_on_error=False)
                for position, command in sent.items():
                    replies[position] = results[command]
        return [(members, reply, now) for members, reply in zip(calls, replies, strict=True)]

    def _answer(
        self,
        submissions: Sequence[Submission],
        members: list[int],
        reply: Any,
        now: int,
        answers: list[Submitted | Exception | None],
    ) -> None:
        """Hand each member of one call its part of the reply (ids in task order) or
        the error as `submit` would raise it."""
        if isinstance(reply, Exception):
            translated = _translate(reply)
            for i in members:
                if translated is not None:
                    answers[i] = translated
                elif isinstance(reply, redis_errors.ResponseError):
                    answers[i] = self._submit_error(reply, submissions[i])
                else:
                    answers[i] = reply
            return
        ids = [raw.decode() for raw in reply]
        start = 0
        for i in members:
            count = len(submissions[i].tasks) if len(members) > 1 else len(ids)
            answers[i] = Submitted(ids[start : start + count], now)
            start += count

    def _stage_args(self, pipe: Any, apart: list[tuple[str, bytes]]) -> int:
        """Queue the SETs of arguments kept apart (before submit.lua); how many. NX: a
        task that exists already (a parent run again) keeps its own, with no TTL."""
        for key, payload in apart:
            pipe.set(key, payload, ex=self.staged_ttl_s, nx=True)
        return len(apart)

    def _submit_call(
        self, merged: Sequence[Submission], now: int
    ) -> tuple[list[Any], list[Any], list[tuple[str, bytes]]]:
        """KEYS and ARGV of submit.lua for submissions that share a merge key (or one),
        and the (key, arguments) to SET before it, for arguments kept apart."""
        first = merged[0]
        if first.idempotency_key is not None and len(first.tasks) != 1:
            raise ValueError("an idempotency key goes with exactly one task")
        deps = list(dict.fromkeys(first.depends_on))
        if len(deps) > MAX_DEPENDENCIES:
            raise ValueError(f"a task depends on at most {MAX_DEPENDENCIES} tasks")
        tenant, retention = first.tenant, first.retention
        keys = [
            self.keys.queue_of(first.depth),
            self.keys.function(first.function_id),
            self.keys.idempotency(tenant, first.idempotency_key or ""),
            self.keys.unfinished,
            self.keys.index(tenant),
            *(self.keys.task(d) for d in deps),
            *(self.keys.dependents(d) for d in deps),
        ]
        args: list[Any] = [
            first.function_id,
            now,
            int(first.deadline_s * 1000),
            first.max_attempts,
            first.idempotency_ttl_s if first.idempotency_key else 0,
            first.idempotency_digest,
            tenant,
            first.max_unfinished,
            self.result_ttl_s * 2000,  # the index outlives tasks by as long again
            first.depth,
            len(deps),
            self.result_ttl_s,
            self.keys.done_channel,
            self.inline_result_bytes,
            retention.result_ttl_s or 0,
            "" if retention.expire_after_read is None else int(retention.expire_after_read),
            *deps,
        ]
        apart: list[tuple[str, bytes]] = []
        for submission in merged:
            for task_id, payload in submission.tasks:
                keys.append(self.keys.task(task_id))
                if len(payload) > self.args_apart_bytes:
                    apart.append((self.keys.args(task_id), payload))
                    payload = b""
                args += [task_id, payload]
        return keys, args, apart

    @staticmethod
    def _submit_error(exc: redis_errors.ResponseError, submission: Submission) -> Exception:
        """The platform's error for submit.lua's refusal (see its docstring)."""
        text = str(exc)
        if "NOFUNCTION" in text:
            return FunctionNotFound(submission.function_id)
        if text.startswith("NODEPENDENCY"):
            return TaskNotFound(text.split()[-1])
        if text.startswith("IDEMCONFLICT") and submission.idempotency_key is not None:
            return IdempotencyConflict(submission.idempotency_key, text.split()[-1])
        if text.startswith("QUOTA"):
            unfinished = int(text.split()[-1])
            return QuotaExceeded(
                submission.tenant, unfinished, submission.max_unfinished, len(submission.tasks)
            )
        return exc

    @_translated
    async def get_tasks(
        self, task_ids: Sequence[str], *, with_result: bool = True
    ) -> list[TaskRecord | None]:
        fields = list(_FIELDS + (_RESULT_FIELDS if with_result else ()))
        async with self.redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.hmget(self.keys.task(task_id), fields)
            rows = [dict(zip(fields, row, strict=True)) for row in await pipe.execute()]
        await self._name_workers(rows)
        apart = [(t, row) for t, row in zip(task_ids, rows, strict=True) if _apart(row)]
        if apart:  # results kept apart: read once, only where there is one
            async with self.redis.pipeline(transaction=False) as pipe:
                for task_id, _row in apart:
                    pipe.get(self.keys.result(task_id))
                for (_task_id, row), result in zip(apart, await pipe.execute(), strict=True):
                    row["r"] = result
        return [_task_record(t, row) for t, row in zip(task_ids, rows, strict=True)]

    async def _name_workers(self, rows: list[dict[str, Any]]) -> None:
        """Put the worker's id in place of its number (`w` of the retained form) in
        each row; ids this Store has not seen yet are read in one round trip."""
        retained = [row for row in rows if row.get("h") is not None and row.get("w")]
        unknown = list({row["w"] for row in retained} - self._workers.keys())
        if unknown:
            names = await self.redis.hmget(self.keys.workers, [b"n:" + n for n in unknown])
            self._workers.update((n, w) for n, w in zip(unknown, names, strict=True) if w)
        for row in retained:
            row["w"] = self._workers.get(row["w"])

    @_translated
    async def dependency_results(
        self, task_ids: Sequence[str], *, most_bytes: int
    ) -> dict[str, bytes] | str:
        """The results of completed tasks, for the tasks that take them as arguments;
        or why they cannot be had: one did not complete (its record may have expired)
        or together they exceed `most_bytes`. One round trip for the sizes (wherever
        each result is kept), then `get_tasks`."""
        ids = list(dict.fromkeys(task_ids))
        async with self.redis.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.hmget(self.keys.task(task_id), ["status", "h"])
                for field in ("r", "result"):
                    pipe.hstrlen(self.keys.task(task_id), field)
                pipe.strlen(self.keys.result(task_id))
            replies = await pipe.execute()
        total = 0
        for i, task_id in enumerate(ids):
            (status, header), *sizes = replies[i * 4 : i * 4 + 4]
            record = _task_record(task_id, {"status": status, "h": header})
            if record is None or record.status is not TaskStatus.COMPLETED:
                return f"dependency {task_id} is {record.status if record else 'gone (expired)'}"
            total += sum(sizes)
        if total > most_bytes:
            return f"the dependencies' results take {total:,} bytes, over {most_bytes:,}"
        results: dict[str, bytes] = {}
        for task_id, record in zip(ids, await self.get_tasks(ids), strict=True):
            if record is None:  # expired between the two reads
                return f"dependency {task_id} is gone (expired)"
            results[task_id] = record.result or b""
        return results

    async def get_task(self, task_id: str, *, with_result: bool = True) -> TaskRecord | None:
        return (await self.get_tasks([task_id], with_result=with_result))[0]

    @_translated
    async def list_tasks(
        self,
        *,
        limit: int,
        tenant: str = DEFAULT_TENANT,
        cursor: str | None = None,
        keep: Callable[[TaskRecord], bool] = lambda _record: True,
        max_scanned: int = 5000,
    ) -> tuple[list[TaskRecord], str | None]:
        """Newest first, from the index: up to `limit` records (without results) that
        `keep` accepts, and the cursor of the next page (None at the end): the id of the
        last index entry passed, or `old:<queued ms>-<passed at that ms>` in the old
        index. Reads at most `max_scanned` index entries, so a rare filter may answer a
        short page with a cursor to go on from."""
        found: list[TaskRecord] = []
        batch = min(max(limit * 2, 100), max_scanned)
        async with contextlib.aclosing(self._listed(tenant, cursor, batch)) as listed:
            scanned = 0
            async for record, after in listed:
                scanned += 1
                if record is not None and keep(record):
                    found.append(record)
                if len(found) == limit or scanned == max_scanned:
                    return found, after
        return found, None

    async def _listed(
        self, tenant: str, cursor: str | None, batch: int
    ) -> AsyncIterator[tuple[TaskRecord | None, str]]:
        """(record, or None if it expired; the cursor after it) of each index entry from
        `cursor` on, newest first: the stream, then the old index. Entries of expired
        tasks are deleted as met. Reads `batch` entries per round trip."""
        if not (cursor or "").startswith("old:"):
            index = self.keys.index(tenant)
            top = f"({cursor}" if cursor else "+"
            while rows := await self.redis.xrevrange(index, max=top, min="-", count=batch):
                ids = [_listed_id(fields) for _, fields in rows]
                records = await self.get_tasks(ids, with_result=False)
                if gone := [e for (e, _), r in zip(rows, records, strict=True) if r is None]:
                    await self.redis.xdel(index, *gone)
                for (entry_id, _), record in zip(rows, records, strict=True):
                    top = f"({entry_id.decode()}"
                    yield record, entry_id.decode()
                if len(rows) < batch:
                    break
            cursor = None
        async for item in self._listed_in_old_index(tenant, cursor, batch):
            yield item

    async def _listed_in_old_index(
        self, tenant: str, cursor: str | None, batch: int
    ) -> AsyncIterator[tuple[TaskRecord | None, str]]:
        """`_listed` in the sorted set an older version kept (ids scored by queued ms).
        A cursor is `old:<ms>-<how many at that ms were passed>`: a batch shares one ms."""
        key = self.keys.old_index(tenant)
        top: int | None = None
        skip = 0
        if cursor:
            ms, _, passed = cursor.removeprefix("old:").partition("-")
            top, skip = int(ms), int(passed)
        while rows := await self.redis.zrevrangebyscore(
            key, "+inf" if top is None else top, "-inf", start=skip, num=batch, withscores=True
        ):
            if top is None and self.result_ttl_s:  # nothing adds to it: let it go in time
                await self.redis.expire(key, 2 * self.result_ttl_s, nx=True)
            ids = [raw.decode() for raw, _ in rows]
            records = await self.get_tasks(ids, with_result=False)
            if gone := [i for i, r in zip(ids, records, strict=True) if r is None]:
                await self.redis.zrem(key, *gone)
            for (_, score), record in zip(rows, records, strict=True):
                if int(score) != top:
                    top, skip = int(score), 0
                if record is not None:  # one dropped from the index just now is not skipped
                    skip += 1
                yield record, f"old:{top}-{skip}"
            if len(rows) < batch:
                break

    @_translated
    async def cancel(self, task_ids: Sequence[str], *, failure: bytes, error: str) -> list[str]:
        """End the tasks CANCELLED unless they already ended (see cancel.lua); returns
        each one's status afterwards, '' for an unknown task."""
        statuses = await self._cancel(
            keys=[
                self.keys.queue,
                self.keys.nested_queue,
                self.keys.cancels,
                self.keys.unfinished,
                *(self.keys.task(t) for t in task_ids),
            ],
            args=[
                GROUP,
                now_ms(),
                self.result_ttl_s,
                self.keys.done_channel,
                self.inline_result_bytes,
                failure,
                error,
                *task_ids,
            ],
        )
        return [raw.decode() for raw in statuses]

    @_translated
    async def next_cancels(self, *, timeout_s: float, most: int = 1000) -> list[str]:
        """Ids of tasks cancelled while QUEUED or RUNNING, waiting up to timeout_s for one."""
        item = await self.redis.blpop([self.keys.cancels], timeout=timeout_s)
        if item is None:
            return []
        more = await self.redis.lpop(self.keys.cancels, most - 1) if most > 1 else None
        return [raw.decode() for raw in [item[1], *(more or [])]]

    # -- the dispatcher's side ---------------------------------------------------------

    @_translated
    async def ensure_group(self) -> None:
        for stream in (self.keys.nested_queue, self.keys.queue):
            try:
                await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except redis_errors.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    @_translated
    async def read_queue(
        self,
        *,
        count: int,
        block_ms: int | None,
        pending: bool = False,
        after: str = "0",
        nested: bool | None = None,
    ) -> list[QueueEntry]:
        """Next `count` new entries of each stream (blocking up to block_ms), nested
        calls first; or with `pending` the entries this dispatcher consumer already
        holds after id `after` (its PEL). `nested` True or False reads only that one
        stream (pending reads need one)."""
        streams = [self.keys.nested_queue, self.keys.queue]
        if nested is not None:
            streams = [self.keys.queue_of(int(nested))]
        elif pending:
            raise ValueError("a pending read is of one stream: pass nested")
        reply = await self.redis.xreadgroup(
            GROUP,
            CONSUMER,
            {stream: after if pending else ">" for stream in streams},
            count=count,
            block=None if pending else block_ms,
        )
        entries = []
        nested_key = self.keys.nested_queue.encode()
        for stream, items in sorted(reply or [], key=lambda r: r[0] != nested_key):
            for entry_id, fields in items:
                if not fields:  # in the PEL but deleted from the stream: nothing to run
                    await self.redis.xack(stream, GROUP, entry_id)
                    continue
                entries.append(
                    QueueEntry(
                        entry_id=entry_id.decode(),
                        task_id=fields[b"t"].decode(),
                        attempt=int(fields[b"a"]),
                        function_id=fields[b"f"].decode(),
                        deadline_s=int(fields[b"d"]) / 1000,
                        payload=fields.get(b"p"),  # None: kept apart (P), read below
                        tenant=fields.get(b"n", DEFAULT_TENANT.encode()).decode(),
                        depth=int(fields.get(b"c", 0)),
                        depends_on=tuple(fields[b"w"].decode().split(","))
                        if b"w" in fields
                        else (),
                    )
                )
        apart = [i for i, entry in enumerate(entries) if entry.payload is None]
        if apart:
            found = await self.redis.mget([self.keys.args(entries[i].task_id) for i in apart])
            for i, payload in zip(apart, found, strict=True):
                if payload is not None:
                    entries[i] = replace(entries[i], payload=payload)
        return entries

    @_translated
    async def mark_started(self, started: Sequence[tuple[str, int, str]]) -> list[int]:
        """(task_id, attempt, worker_id) triples: QUEUED -> RUNNING, fenced by attempt.
        Per task 1 (started), 0 (left alone) or -1 (cancelled: the attempt must not run)."""
        args: list[Any] = [now_ms()]
        for _task_id, attempt, worker_id in started:
            args += [attempt, worker_id]
        return await self._start(keys=[self.keys.task(t) for t, _, _ in started], args=args)

    @_translated
    async def finish(
        self, outcomes: Sequence[Outcome], logs: Sequence[tuple[str, bytes]] = ()
    ) -> list[bool]:
        """Commit outcomes in one round trip; False for each that was stale. `logs`,
        output chunks (see `append_logs`), are appended first in the same round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            self._append_logs(pipe, logs)
            verdicts = []  # where each outcome's finish.lua reply will be
            for o in outcomes:
                staged = len(o.result) > self.inline_result_bytes
                if staged:  # a plain SET: the script never copies it (see finish.lua)
                    blob = self.keys.blob(o.task_id, o.attempt)
                    pipe.set(blob, o.result, ex=self.staged_ttl_s)
                verdicts.append(len(pipe))
                await self._finish(
                    keys=[
                        self.keys.task(o.task_id),
                        self.keys.queue_of(o.depth),
                        self.keys.unfinished,
                        self.keys.blob(o.task_id, o.attempt),
                        self.keys.result(o.task_id),
                    ],
                    args=[
                        GROUP,
                        o.entry_id,
                        o.attempt,
                        o.status.value,
                        b"" if staged else o.result,
                        o.error,
                        o.error_kind.value if o.error_kind else "",
                        now_ms(),
                        self.result_ttl_s,
                        self.keys.done_channel,
                        o.task_id,
                        self.inline_result_bytes,
                        int(staged),
                        o.started_ms or "",
                        o.worker_id,
                    ],
                    client=pipe,
                )
            replies = await self._execute(pipe)
            return [bool(replies[i]) for i in verdicts]

    @_translated
    async def requeue(
        self, entry: QueueEntry | tuple[str, str, int], *, error: str, failure: bytes
    ) -> str:
        """Give back a lost attempt; returns 'requeued', 'failed' or 'stale'."""
        depth = entry.depth if isinstance(entry, QueueEntry) else 0
        if isinstance(entry, QueueEntry):
            entry = (entry.task_id, entry.entry_id, entry.attempt)
        task_id, entry_id, attempt = entry
        verdict = await self._requeue(
            keys=[self.keys.task(task_id), self.keys.queue_of(depth), self.keys.unfinished],
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
    async def expire_read(self, task_ids: Sequence[str], ttl_s: int) -> None:
        """Keep ended tasks (their records, results and output) at most `ttl_s` more:
        for tasks that asked to go once their result was read."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                for key in (self.keys.task, self.keys.result, self.keys.logs):
                    pipe.expire(key(task_id), ttl_s, lt=True)  # never longer than it was
            await pipe.execute()

    @_translated
    async def append_logs(self, chunks: Sequence[tuple[str, bytes]]) -> None:
        """Append output chunks, (task_id, bytes) in order, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            self._append_logs(pipe, chunks)
            await pipe.execute()

    def _append_logs(self, pipe: Any, chunks: Sequence[tuple[str, bytes]]) -> None:
        for task_id, data in chunks:
            pipe.append(self.keys.logs(task_id), data)
            if self.result_ttl_s:
                pipe.expire(self.keys.logs(task_id), self.result_ttl_s)

    @_translated
    async def read_logs(self, task_id: str, offset: int = 0) -> bytes:
        """What a task printed, from byte `offset` on (b"" if nothing, or nothing new)."""
        return await self.redis.getrange(self.keys.logs(task_id), offset, -1)

    @_translated
    async def queue_depth(self) -> tuple[int, int]:
        """(queued, held by the dispatcher) attempts."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in (self.keys.queue, self.keys.nested_queue):
                pipe.xlen(stream)
                pipe.xpending(stream, GROUP)
            try:
                length, pending, nested_length, nested_pending = await pipe.execute()
            except redis_errors.ResponseError:  # no group yet: nothing was ever queued
                return 0, 0
        held = int(pending["pending"]) + int(nested_pending["pending"])
        return max(length + nested_length - held, 0), held

    # -- the dispatcher's view, for the status API ----------------------------------------

    @_translated
    async def put_status(self, snapshot: bytes, *, ttl_s: float) -> None:
        await self.redis.set(self.keys.status, snapshot, px=max(1, int(ttl_s * 1000)))

    @_translated
    async def get_status(self) -> bytes | None:
        return await self.redis.get(self.keys.status)

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


class Ended:
    """A task that just ended, as published. Every gateway process hears every end,
    mostly of tasks nobody there waits for: the record is built when first asked for."""

    __slots__ = ("_items", "_record", "task_id")
    _UNREAD = object()

    def __init__(self, task_id: str, items: list[Any]) -> None:
        self.task_id = task_id
        self._items = items  # the message: task id, then field name and value pairs
        self._record: Any = Ended._UNREAD

    @property
    def record(self) -> TaskRecord | None:
        """None if its result was too large to travel in the message (read it then)."""
        if self._record is Ended._UNREAD:
            items = self._items
            fields = {items[i].decode(): items[i + 1] for i in range(1, len(items) - 1, 2)}
            # `r` (`result` from an older version) travels only when small enough
            has_result = "r" in fields or "result" in fields
            self._record = _task_record(self.task_id, fields) if has_result else None
        return self._record


def _ended(data: bytes) -> Ended:
    items = msgpack.unpackb(data, raw=True)  # Lua strings arrive as msgpack str: keep bytes
    return Ended(items[0].decode(), items)


# -- the two forms of a task's hash (see the module docstring), read in one place ------

_OPEN_FIELDS = (
    "function_id", "tenant", "status", "attempt", "max_attempts", "deadline_ms", "queued_ms",
    "started_ms", "finished_ms", "worker", "error", "error_kind",
)  # fmt: skip
_RETAINED_FIELDS = ("h", "f", "n", "w", "e", "k")
_FIELDS = _OPEN_FIELDS + _RETAINED_FIELDS
_RESULT_FIELDS = ("result", "result_apart", "r", "o")
_STATUS_LETTERS = {b"C": TaskStatus.COMPLETED, b"F": TaskStatus.FAILED, b"X": TaskStatus.CANCELLED}


def _listed_id(fields: dict[bytes, bytes]) -> str:
    """The task id of a listing index entry (see submit.lua)."""
    raw = fields.get(b"u")
    return str(uuid.UUID(bytes=raw)) if raw is not None else fields[b"i"].decode()


def _apart(fields: dict[str, bytes | None]) -> bool:
    """Whether the task's result is kept in <p>:result:<task_id>, in either form."""
    return bool(fields.get("o") or fields.get("result_apart"))


def _task_record(task_id: str, fields: dict[str, bytes | None]) -> TaskRecord | None:
    """The task its hash's fields describe, in either form; None if there are none.
    A result read from <p>:result:<task_id> comes as `r`."""
    header = fields.get("h")
    if header is not None:
        return _retained_record(task_id, header, fields)
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
        result=fields["r"] if fields.get("r") is not None else fields.get("result"),
        tenant=_text(fields.get("tenant")) or DEFAULT_TENANT,
    )


def _retained_record(task_id: str, header: bytes, fields: dict[str, bytes | None]) -> TaskRecord:
    """An ended task in the retained form close_task writes (publish_ended.lua)."""
    fixed = msgpack.unpackb(header, raw=True)
    letter, attempt, max_attempts, deadline_ms, queued, started, finished, fid = fixed[:8]
    kind = _text(fields.get("k"))
    return TaskRecord(
        task_id=task_id,
        function_id=str(uuid.UUID(bytes=fid)) if fid else _text(fields.get("f")) or "",
        status=_STATUS_LETTERS[letter],
        attempt=attempt,
        max_attempts=max_attempts,
        deadline_s=deadline_ms / 1000,
        queued_at_ms=queued,
        started_at_ms=None if started is False else queued + started,
        finished_at_ms=queued + finished,
        worker_id=_text(fields.get("w")),
        error=_text(fields.get("e")),
        error_kind=ErrorKind(kind) if kind else None,
        result=fields.get("r"),
        tenant=_text(fields.get("n")) or DEFAULT_TENANT,
        expire_after_read=fixed[8:] == [True],
    )
