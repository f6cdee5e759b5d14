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
"""

from __future__ import annotations

import pickle
import threading
import uuid
from collections.abc import Iterable
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


class Channel:
    """The slot's side of nested calls, over the pipe it gets its tasks from. One
    call at a time: a thread of the function that calls while another waits, waits."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._parent = ""
        self._calls = 0

    def begin(self, task_id: str) -> None:
        """A new task starts in this slot: its calls are numbered from 0."""
        self._parent, self._calls = task_id, 0

    def call(self, function_id: str, payloads: list[bytes], options: dict[str, Any]) -> list[str]:
        """Queue one task per payload; returns their ids."""
        with self._lock:
            ids = self._next_ids(len(payloads))
            self._conn.send(("call", function_id, ids, payloads, options))
            (error,) = self._reply("called")
        if error:
            raise NestedCallError(error)
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


def install(conn: Connection) -> Channel:
    """Called once by a slot process, before any user code runs."""
    global _channel
    _channel = Channel(conn)
    return _channel


def rebuild(function_id: str, name: str, options: dict[str, Any], version: int | None) -> Any:
    """What a pickled RemoteFunction becomes: in a slot, one that calls through the
    worker; anywhere else, one that calls the gateway (FAAS_URL, FAAS_API_KEY)."""
    if _channel is not None:
        return NestedFunction(_channel, function_id, name, options)
    from faas.client import Client, RemoteFunction

    return RemoteFunction(Client(), function_id, name, options, version=version)


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
        self, *, deadline_s: float | None = None, max_attempts: int | None = None
    ) -> NestedFunction:
        options = {**self._options, "deadline_s": deadline_s, "max_attempts": max_attempts}
        chosen = {k: v for k, v in options.items() if v}
        return NestedFunction(self._channel, self.id, self.name, chosen)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        payload, options = self._call_of(args, kwargs)
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
        options = {**self._options, "depends_on": depends_on} if depends_on else self._options
        return payload, options

    def map(self, *iterables: Iterable[Any], return_exceptions: bool = False) -> list[Any]:
        """Like `list(map(fn, *iterables))`, each call a task; results in order."""
        with futures.collecting() as depends_on:
            payloads = [_dumps((args, {})) for args in zip(*iterables, strict=False)]
        if depends_on:
            raise TypeError("tasks as arguments (futures) go to submit, one call at a time")
        if not payloads:
            return []
        ids, ended = self._channel.run(self.id, payloads, self._options)
        results = []
        for task_id in ids:
            try:
                results.append(_value(task_id, ended[task_id]))
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


def _dumps(obj: object) -> bytes:
    return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _value(task_id: str, ended: Ended) -> Any:
    import dill  # slots load with dill (see worker.slot); imported where it runs

    status, kind, error, result = ended
    if status == "COMPLETED":
        return dill.loads(result)
    if kind == "user" and result:
        exc = dill.loads(result)
        if isinstance(exc, BaseException):
            exc.add_note(f"in nested call {task_id}:\n{error}")
            raise exc
    raise WorkerFailure(task_id, kind or "unknown", error or f"task {status or 'not found'}")
