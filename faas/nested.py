"""Calls from inside a running function: the SDK's functions work in a slot too.

A `RemoteFunction` pickles as a reference (its function id, see `rebuild`), so a
registered function may capture one::

    child = client.register(lambda x: x * x)
    parent = client.register(lambda n: sum(child.map(range(n))))

Inside a slot, `child(...)`, `child.submit(...).result()` and `child.map(...)` travel
over the slot's pipe to its worker and the worker's link to the dispatcher: never
through the HTTP gateway, and with no credentials in the slot. While the parent waits,
its worker lends the slot out (it may fork a spare slot process) and the dispatcher
runs children before new top-level tasks, so waiting parents cannot starve their
children of slots. Child task ids are derived from the parent's id and the call's
index in it: a parent that runs again after its worker died finds the children it had
started instead of starting them twice.

Inline calls: through `child.options(inline=True)`, a call or a map runs in the
caller's own slot, as a plain function call (arguments and result still copied by
pickling), with no task, no queue and no other process: about as cheap as a local
call once the slot has the function's code, which it asks its worker for once.
The dispatcher allows it for the caller's tenant's functions that run in the same
environment as the caller (else the call is a task, as without the option). What an
inline call gives up is what a task gives: its own record, retries, logs, deadline
and process; it lives and dies with its caller, whose re-run runs it again.
"""

from __future__ import annotations

import functools
import pickle
import threading
import uuid
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle

from faas import futures
from faas.errors import FaasClientError, WorkerFailure

Ended = tuple[str, str, str, bytes]  # status, error_kind, error, result

_channel: Channel | None = None
"""Set in slot processes (by `install`); None everywhere else."""


class NestedCallError(FaasClientError):
    """A nested call the platform refused: unknown function, too deep, no slot left."""


Loader = Callable[[str, bytes, bytes], Callable[..., Any]]
"""(function_id, function pickle, sources) -> the function (see `worker.slot`)."""


class Channel:
    """The slot's side of nested calls, over the pipe it gets its tasks from. One
    call at a time: a thread of the function that calls while another waits, waits."""

    def __init__(self, conn: Connection, load: Loader | None = None) -> None:
        self._conn = conn
        self._load = load
        self._lock = threading.Lock()
        self._parent = ""
        self._calls = 0
        # The functions asked about: loaded if they may run inline here, else None
        # (the slot serves one tenant in one environment: the answer holds for its life).
        self._inline: dict[str, Callable[..., Any] | None] = {}

    def begin(self, task_id: str) -> None:
        """A new task starts in this slot: its calls are numbered from 0."""
        self._parent, self._calls = task_id, 0

    def call(self, function_id: str, payloads: list[bytes], options: dict[str, Any]) -> list[str]:
        """Queue one task per payload; returns their ids at once, without waiting for
        the dispatcher (a fan-out of submits costs no round trip each). A call it
        refuses is reported by the wait on its tasks."""
        with self._lock:
            ids = self._next_ids(len(payloads))
            self._conn.send(("call", function_id, ids, payloads, options))
        return ids

    def run(
        self, function_id: str, payloads: list[bytes], options: dict[str, Any]
    ) -> tuple[list[str], dict[str, Ended]]:
        """Queue one task per payload and wait for them all, in one message each way
        (a call and a wait would cost a round trip to the dispatcher more)."""
        with self._lock:
            ids = self._next_ids(len(payloads))
            self._conn.send(("run", function_id, ids, payloads, options))
            ended, error = self._reply("ended")
        if error:
            raise NestedCallError(error)
        return ids, ended

    def wait(self, task_ids: list[str]) -> dict[str, Ended]:
        """(status, error_kind, error, result) of each task, once all have ended."""
        with self._lock:
            self._conn.send(("await", task_ids))
            ended, error = self._reply("ended")
        if error:
            raise NestedCallError(error)
        return ended

    def inline_function(self, function_id: str) -> Callable[..., Any] | None:
        """The function to call in this slot, or None if its calls must be tasks."""
        if function_id in self._inline or self._load is None:
            return self._inline.get(function_id)
        with self._lock:
            self._conn.send(("inline", function_id))
            inline, error, function, sources = self._reply("inline")
        if error:
            raise NestedCallError(error)
        fn = self._load(function_id, function, sources) if inline else None
        self._inline[function_id] = fn
        return fn

    def _next_ids(self, count: int) -> list[str]:
        parent = uuid.UUID(self._parent)
        ids = [str(uuid.uuid5(parent, str(self._calls + i))) for i in range(count)]
        self._calls += count
        return ids

    def _reply(self, kind: str) -> tuple[Any, ...]:
        message = self._conn.recv()
        if message[0] != kind:
            raise NestedCallError(f"expected {kind!r} from the worker, got {message[0]!r}")
        return tuple(message[1:])


def install(conn: Connection, load: Loader | None = None) -> Channel:
    """Called once by a slot process, before any user code runs."""
    global _channel
    _channel = Channel(conn, load)
    return _channel


def rebuild(function_id: str, name: str, options: dict[str, Any], version: int | None) -> Any:
    """What a pickled RemoteFunction becomes: in a slot, one that calls through the
    worker; anywhere else, one that calls the gateway (FAAS_URL, FAAS_API_KEY)."""
    if _channel is not None:
        return NestedFunction(_channel, function_id, name, options)
    from faas.client import Client, RemoteFunction

    options = dict(options)
    inline = bool(options.pop("inline", False))
    return RemoteFunction(Client(), function_id, name, options, version=version, inline=inline)


class NestedFunction:
    """A registered function as seen from inside a running one."""

    def __init__(
        self, channel: Channel, function_id: str, name: str, options: dict[str, Any]
    ) -> None:
        self._channel = channel
        self.id = function_id
        self.name = name
        self._options = options

    def __repr__(self) -> str:
        return f"NestedFunction({self.name!r}, id={self.id!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return rebuild, (self.id, self.name, self._options, None)

    def options(
        self,
        *,
        deadline_s: float | None = None,
        max_attempts: int | None = None,
        inline: bool | None = None,
    ) -> NestedFunction:
        if inline is None:
            inline = self._options.get("inline")
        options = {**self._options, "deadline_s": deadline_s, "max_attempts": max_attempts,
                   "inline": inline}  # fmt: skip
        chosen = {k: v for k, v in options.items() if v}
        return NestedFunction(self._channel, self.id, self.name, chosen)

    def _inline(self) -> Callable[..., Any] | None:
        return self._channel.inline_function(self.id) if self._options.get("inline") else None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        payload, options = self._call_of(args, kwargs)
        if "depends_on" not in options and (fn := self._inline()) is not None:
            return _run_inline(fn, payload)
        (task_id,), ended = self._channel.run(self.id, [payload], options)
        return _value(task_id, ended[task_id])

    def submit(self, *args: Any, **kwargs: Any) -> NestedTask:
        """Queue a call; tasks among the arguments are futures (see `faas.futures`)."""
        payload, options = self._call_of(args, kwargs)
        (task_id,) = self._channel.call(self.id, [payload], options)
        return NestedTask(self._channel, task_id)

    def _call_of(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[bytes, dict]:
        with futures.collecting() as depends_on:
            payload = _dumps((args, kwargs))
        options = self._task_options()
        return payload, {**options, "depends_on": depends_on} if depends_on else options

    def _task_options(self) -> dict[str, Any]:
        return {k: v for k, v in self._options.items() if k != "inline"}

    def map(self, *iterables: Iterable[Any], return_exceptions: bool = False) -> list[Any]:
        """Like `list(map(fn, *iterables))`, each call a task (or, inline, a call in
        this slot, one after the other); results in order."""
        with futures.collecting() as depends_on:
            payloads = [_dumps((args, {})) for args in zip(*iterables, strict=False)]
        if depends_on:
            raise TypeError("tasks as arguments (futures) go to submit, one call at a time")
        if not payloads:
            return []
        if (fn := self._inline()) is not None:
            calls = [functools.partial(_run_inline, fn, payload) for payload in payloads]
        else:
            ids, ended = self._channel.run(self.id, payloads, self._task_options())
            calls = [functools.partial(_value, task_id, ended[task_id]) for task_id in ids]
        results = []
        for call in calls:
            try:
                results.append(call())
            except Exception as exc:
                if not return_exceptions:
                    raise
                results.append(exc)
        return results


class NestedTask:
    """A call made from inside a running function."""

    def __init__(self, channel: Channel, task_id: str) -> None:
        self._channel = channel
        self.id = task_id

    def __repr__(self) -> str:
        return f"NestedTask({self.id!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        """Among a submit's arguments, a task stands for its result (`faas.futures`)."""
        return futures.reference(self.id)

    def result(self) -> Any:
        """The value, or raise what the call failed with. The caller's own deadline
        bounds the wait."""
        return _value(self.id, self._channel.wait([self.id])[self.id])


def _run_inline(fn: Callable[..., Any], payload: bytes) -> Any:
    """Call `fn` here on the pickled arguments and return a copy of its value, as a
    task would: caller and callee share no mutable object."""
    import dill

    args, kwargs = dill.loads(payload)
    return dill.loads(_dumps(fn(*args, **kwargs)))


def _dumps(obj: object) -> bytes:
    return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _value(task_id: str, ended: Ended) -> Any:
    import dill  # slots load with dill (see worker.slot); imported where it runs

    status, kind, error, result = ended
    if status == "COMPLETED":
        return dill.loads(result)
    if status == "":  # never queued: the call was refused
        raise NestedCallError(error or f"task {task_id} not found")
    if kind == "user" and result:
        exc = dill.loads(result)
        if isinstance(exc, BaseException):
            exc.add_note(f"in nested call {task_id}:\n{error}")
            raise exc
    raise WorkerFailure(task_id, kind or "unknown", error or f"task {status or 'not found'}")
