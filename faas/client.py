"""The Python SDK: register functions, call them, wait for results.

    from faas import Client
    client = Client("http://127.0.0.1:8000")
    square = client.register(lambda x: x * x)
    square(7)                        # 49, one synchronous request
    task = square.submit(8)          # returns at once
    task.result(timeout=10)          # 64, long-polls
    task.cancel()                    # a no-op once it ended
    task.logs()                      # what it printed; task.follow_logs() streams it
    square.map(range(1000))          # batched, with a progress bar; Ctrl-C cancels

Functions are pickled with cloudpickle *by value* (their module's code travels
with them), so workers need only the libraries the function imports.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import pickle
import sys
import time
import types
import uuid
import warnings
import zipfile
from collections import ChainMap
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import cloudpickle
import httpx
from tqdm import tqdm

from faas import futures
from faas.errors import (
    ApiError,
    FaasClientError,
    GatewayUnreachable,
    ResultTimeout,
    TaskCancelled,
    WorkerFailure,
)
from faas.modules import source_texts, user_modules

DEFAULT_URL = "http://127.0.0.1:8000"
_TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
_POLL_S = 30.0  # one long-poll request; the gateway may cap it lower
OCTET_STREAM = "application/octet-stream"
_HEADER_FIELDS: dict[str, Callable[[str], Any]] = {
    "task_id": str, "status": str, "function_id": str, "attempt": int, "max_attempts": int,
    "deadline_s": float, "queued_at_ms": int, "started_at_ms": int, "finished_at_ms": int,
    "worker_id": str, "error": unquote, "error_kind": str,
}  # fmt: skip
"""Fields of a binary answer's X-Faas-* headers, and how to read each."""
_Seen = tuple[dict[str, Any], bytes | None]
"""A task's view and its raw result pickle when that came apart (None: in the view)."""


def dumps(obj: object) -> str:
    return base64.b64encode(cloudpickle.dumps(obj)).decode("ascii")


def loads(text: str) -> Any:
    return pickle.loads(base64.b64decode(text))


def gateway_url(url: str) -> str:
    """`host:port` means `http://host:port`; anything but an http(s) URL is refused."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise FaasClientError(f"not a gateway URL: {url!r} ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise FaasClientError(f"not a gateway URL: {url!r} (expected http://HOST:PORT)")
    return url


def pickle_function(fn: Callable[..., Any], modules: Sequence[types.ModuleType] = ()) -> bytes:
    """cloudpickle, with the caller's own modules that `fn` needs (and `modules`)
    pickled by value: workers do not have the caller's code. Installed packages stay
    by reference."""
    shipped = shipped_modules(fn, modules)
    registered = []
    try:
        for module in shipped:
            with contextlib.suppress(ValueError):  # e.g. not in sys.modules
                cloudpickle.register_pickle_by_value(module)
                registered.append(module)
        buffer = io.BytesIO()
        _KeepingFileNames(buffer, protocol=pickle.DEFAULT_PROTOCOL).dump(fn)
        return buffer.getvalue()
    finally:
        for module in registered:
            with contextlib.suppress(ValueError):
                cloudpickle.unregister_pickle_by_value(module)


def _code_reduce_keeping_file_name(code: types.CodeType) -> tuple[Any, tuple[Any, ...]]:
    """cloudpickle's reduction of a code object, with the file name it replaces by
    "<dynamic-code>" put back: the workers map it to the source sent with the
    registration, so remote tracebacks name the user's file and show its lines."""
    constructor, args = _cloudpickle_code_reduce(code)
    if len(args) > _CO_FILENAME and args[_CO_FILENAME] == "<dynamic-code>":
        args = (*args[:_CO_FILENAME], code.co_filename, *args[_CO_FILENAME + 1 :])
    return constructor, args


_cloudpickle_code_reduce = cloudpickle.cloudpickle._code_reduce
_CO_FILENAME = 10  # position of co_filename among types.CodeType's arguments


class _KeepingFileNames(cloudpickle.Pickler):
    dispatch_table = ChainMap(  # type: ignore[assignment]
        {types.CodeType: _code_reduce_keeping_file_name}, cloudpickle.Pickler.dispatch_table
    )


def shipped_modules(
    fn: Callable[..., Any], modules: Sequence[types.ModuleType] = ()
) -> list[types.ModuleType]:
    """The modules pickled by value with `fn`: the caller's own, and `modules`."""
    shipped = user_modules(fn, extra=tuple(modules))
    return shipped + [m for m in modules if m not in shipped]


def zip_paths(paths: Iterable[str | os.PathLike[str]]) -> bytes:
    """A zip of modules and packages (files and folders), as py_modules ships them:
    each at the top level of the archive, under its own name."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for raw in paths:
            path = Path(raw)
            if not path.exists():
                raise FileNotFoundError(f"py_modules: {path} does not exist")
            files = [path] if path.is_file() else sorted(path.rglob("*.py"))
            for file in files:
                bundle.write(file, file.relative_to(path.parent).as_posix())
    return buffer.getvalue()


class Client:
    def __init__(
        self, url: str | None = None, *, api_key: str | None = None, timeout_s: float = 60.0
    ) -> None:
        self.url = gateway_url(url or os.environ.get("FAAS_URL") or DEFAULT_URL)
        headers = {}
        key = api_key or os.environ.get("FAAS_API_KEY")
        if key:
            headers["authorization"] = f"Bearer {key}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise GatewayUnreachable(self.url, exc) from None
        _raise_for_status(response)
        return response

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        try:
            return response.json() if response.content else None
        except ValueError:
            raise FaasClientError(
                f"{self.url} answered {method} {path} with something other than JSON:"
                " is it a faas gateway?"
            ) from None

    def exchange(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        params: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], bytes | None]:
        """A task request in binary form: `content` is sent as a raw pickle, and the
        answer is (the task's view, its raw result pickle or None). The view's
        `result` is None when the raw result came apart; a JSON answer (the
        gateway's fallback for long errors) has it as base64 text, as usual."""
        headers = {"accept": f"{OCTET_STREAM}, application/json"}
        if content is not None:
            headers["content-type"] = OCTET_STREAM
        response = self._send(method, path, content=content, params=params, headers=headers)
        if not response.headers.get("content-type", "").startswith(OCTET_STREAM):
            return response.json(), None
        return _header_view(response.headers), response.content or None

    def events(self, path: str, **params: str) -> Iterator[tuple[str, str]]:
        """(event, data) pairs of a server-sent event stream, until it ends."""
        try:
            with self._http.stream("GET", path, params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for_status(response)
                event = ""
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        yield event, line[6:]
        except httpx.TransportError as exc:
            raise GatewayUnreachable(self.url, exc) from None

    def register(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        requirements: Sequence[str] = (),
        py_modules: Sequence[str | os.PathLike[str]] = (),
        modules: Sequence[types.ModuleType] = (),
        result_ttl_s: int | None = None,
        expire_after_read: bool | None = None,
    ) -> RemoteFunction:
        """Register `fn`. Your own modules it uses travel with it (by value), found
        by following its globals; `modules` adds more. `requirements` are pip
        specifiers the workers install for it; `py_modules` are files or package
        folders shipped as a zip and put first on its path. `result_ttl_s` and
        `expire_after_read`: how long its tasks are kept once ended (see `options`)."""
        name = name or getattr(fn, "__qualname__", None) or "function"
        body: dict[str, Any] = {
            "name": name,
            "payload": base64.b64encode(pickle_function(fn, modules)).decode("ascii"),
            "requirements": list(requirements),
            "sources": source_texts(fn, shipped_modules(fn, modules)),
        }
        if py_modules:
            body["py_modules"] = [base64.b64encode(zip_paths(py_modules)).decode("ascii")]
        if result_ttl_s is not None:
            body["result_ttl_s"] = result_ttl_s
        if expire_after_read is not None:
            body["expire_after_read"] = expire_after_read
        answer = self.request("POST", "/v1/functions", json=body)
        for warning in answer.get("warnings", []):
            warnings.warn(warning, RuntimeWarning, stacklevel=2)
        return RemoteFunction(self, answer["function_id"], name, version=answer.get("version"))

    def function(self, name_or_id: str, *, version: int | None = None) -> RemoteFunction:
        """A registered function by id, or by name: its latest version, or `version`."""
        if not _is_uuid(name_or_id):
            named = self.request("GET", f"/v1/names/{quote(name_or_id, safe='')}")
            versions = named["versions"]
            if version is not None and not 1 <= version <= len(versions):
                raise FaasClientError(f"{name_or_id!r} has versions 1 to {len(versions)}")
            name_or_id = versions[(version or len(versions)) - 1]
        body = self.request("GET", f"/v1/functions/{name_or_id}")
        return RemoteFunction(self, body["function_id"], body["name"])

    def tasks(
        self, *, status: str | None = None, function_id: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """The newest tasks (views without results), optionally filtered."""
        params = {"status": status, "function_id": function_id, "limit": limit}
        page = self.request("GET", "/v1/tasks", params={k: v for k, v in params.items() if v})
        return page["tasks"]

    def workers(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/workers")["workers"]

    def stats(self) -> dict[str, Any]:
        """Queue depth, running tasks, workers and slots, tasks ended per minute."""
        return self.request("GET", "/v1/stats")

    def task(self, task_id: str) -> Task:
        return Task(self, task_id)

    def functions(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/functions")

    def cancel(self, task_ids: Iterable[str], *, chunk: int = 1000) -> list[dict[str, Any]]:
        """Cancel tasks; their views afterwards: CANCELLED, or the end they already had
        (cancelling an ended task changes nothing). ApiError 404 if one is unknown."""
        views: list[dict[str, Any]] = []
        for ids in _chunks(iter(task_ids), chunk):
            views += self.request("POST", "/v1/tasks/cancel", json={"task_ids": ids})["tasks"]
        return views


class RemoteFunction:
    """A registered function. Call it like the local one, or submit and wait later."""

    def __init__(
        self,
        client: Client,
        function_id: str,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        version: int | None = None,
        inline: bool = False,
    ) -> None:
        self.client = client
        self.id = function_id
        self.name = name
        self.version = version  # under `name`, when known
        self._options = options or {}  # per-task options, sent with each submit
        self.inline = inline

    def __repr__(self) -> str:
        return f"RemoteFunction({self.name!r}, id={self.id!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as a reference: a function that captures this one calls it over
        its worker's link when it runs in a slot (see `faas.nested`)."""
        from faas import nested

        options = {**self._options, "inline": True} if self.inline else self._options
        return nested.rebuild, (self.id, self.name, options, self.version)

    def options(
        self,
        *,
        deadline_s: float | None = None,
        max_attempts: int | None = None,
        inline: bool | None = None,
        result_ttl_s: int | None = None,
        expire_after_read: bool | None = None,
    ) -> RemoteFunction:
        """The same function with per-task options for the calls made through it.
        `inline=True` matters inside a running function only: there, a call or a map
        through it runs in the caller's own slot instead of as tasks (see
        `faas.nested`); everywhere else, calls are tasks as usual. `result_ttl_s`:
        seconds its ended tasks are kept (1 to 30 days; else the function's, else the
        server's, 24 h by default); `expire_after_read`: kept only about a minute more
        once their result was fetched. Calls made from inside a running task (nested)
        take neither."""
        options = {
            **self._options, "deadline_s": deadline_s, "max_attempts": max_attempts,
            "result_ttl_s": result_ttl_s, "expire_after_read": expire_after_read,
        }  # fmt: skip
        # an explicit False is a choice (over the function's True); 0 and None are not
        chosen = {k: v for k, v in options.items() if v or v is False}
        return RemoteFunction(
            self.client, self.id, self.name, chosen,
            version=self.version, inline=self.inline if inline is None else inline,
        )  # fmt: skip

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run remotely and return the value (or raise the remote exception)."""
        return self.run(*args, **kwargs).result()

    def run(self, *args: Any, **kwargs: Any) -> Task:
        """Submit and wait in one request (up to one long-poll); the task, ended or not."""
        return self._submit(args, kwargs, wait=_POLL_S)

    def submit(self, *args: Any, idempotency_key: str | None = None, **kwargs: Any) -> Task:
        """Queue a call; returns its task. Tasks among the arguments (futures, see
        `faas.futures`) make it wait for them, holding no slot, and stand for their
        results when it runs."""
        return self._submit(args, kwargs, idempotency_key=idempotency_key)

    def _submit(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        wait: float = 0,
        idempotency_key: str | None = None,
    ) -> Task:
        with futures.collecting() as depends_on:
            content = cloudpickle.dumps((args, kwargs))
        if depends_on:  # JSON carries the list of tasks it waits for
            body = self._call_body(args, kwargs)
            if idempotency_key:
                body["idempotency_key"] = idempotency_key
            view = self.client.request("POST", "/v1/tasks", params={"wait": wait}, json=body)
            return Task(self.client, view["task_id"], view)
        # Binary: the raw pickle goes as the body, no base64 or JSON either way.
        params = {"function_id": self.id, "wait": wait, **self._options}
        if idempotency_key:
            params["idempotency_key"] = idempotency_key
        view, raw = self.client.exchange("POST", "/v1/tasks", params=params, content=content)
        return Task(self.client, view["task_id"], view, raw)

    def _call_body(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        with futures.collecting() as depends_on:
            body = {"function_id": self.id, "payload": dumps((args, kwargs)), **self._options}
        if depends_on:
            body["depends_on"] = depends_on
        return body

    def submit_many(
        self,
        calls: Iterable[tuple[tuple[Any, ...], dict[str, Any]]],
        *,
        batch_size: int = 1000,
        into: list[Task] | None = None,
    ) -> list[Task]:
        """Submit (args, kwargs) pairs in batches; one request per batch. Tasks are
        appended to `into` (if given) as each batch is accepted."""
        tasks: list[Task] = [] if into is None else into
        for chunk in _chunks(iter(calls), batch_size):
            with futures.collecting() as depends_on:
                payloads = [dumps(c) for c in chunk]
            if depends_on:
                raise TypeError("tasks as arguments (futures) go to submit, one call at a time")
            body = {"function_id": self.id, "payloads": payloads, **self._options}
            ids = self.client.request("POST", "/v1/tasks/batch", json=body)["task_ids"]
            tasks += [Task(self.client, task_id) for task_id in ids]
        return tasks

    def map(
        self,
        *iterables: Iterable[Any],
        timeout: float | None = None,
        progress: bool = True,
        return_exceptions: bool = False,
        batch_size: int = 1000,
    ) -> list[Any]:
        """Like `list(map(fn, *iterables))`, run remotely; results in input order.
        Ctrl-C cancels the tasks not yet ended, says so in one line on stderr and
        raises KeyboardInterrupt."""
        calls = ((args, {}) for args in zip(*iterables, strict=False))
        tasks: list[Task] = []
        try:
            self.submit_many(calls, batch_size=batch_size, into=tasks)
            return wait_all(tasks, timeout=timeout, progress=progress,
                            return_exceptions=return_exceptions, desc=self.name)  # fmt: skip
        except KeyboardInterrupt:
            _cancel_outstanding(self.client, tasks)
            raise KeyboardInterrupt from None  # the cancel's context is noise here


class Task:
    """A submitted call."""

    def __init__(
        self,
        client: Client,
        task_id: str,
        view: dict[str, Any] | None = None,
        raw: bytes | None = None,
    ) -> None:
        self.client = client
        self.id = task_id
        self._ended: _Seen | None = None  # kept once ended: it no longer changes
        if view and view.get("status") in _TERMINAL:
            self._ended = (view, raw)

    def __repr__(self) -> str:
        return f"Task({self.id!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        """Among a submit's arguments, a task stands for its result (`faas.futures`)."""
        return futures.reference(self.id)

    def info(self, *, wait: float = 0) -> dict[str, Any]:
        """Everything the gateway knows: status, attempts, timestamps, worker, error."""
        return _with_result_text(*self._poll(wait))

    def status(self) -> str:
        return self._poll(0)[0]["status"]

    def done(self) -> bool:
        return self.status() in _TERMINAL

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """The ended task's view; ResultTimeout if it has not ended within `timeout` s."""
        return _with_result_text(*self._wait(timeout))

    def result(self, timeout: float | None = None) -> Any:
        """The value; raises the function's own exception, WorkerFailure for other
        failures, TaskCancelled if it was cancelled, ResultTimeout if the task has
        not ended within `timeout` seconds."""
        return unwrap(*self._wait(timeout))

    def _poll(self, wait: float) -> _Seen:
        if self._ended is not None:
            return self._ended
        seen = self.client.exchange("GET", f"/v1/tasks/{self.id}", params={"wait": wait})
        if seen[0]["status"] in _TERMINAL:
            self._ended = seen
        return seen

    def _wait(self, timeout: float | None) -> _Seen:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = _POLL_S if deadline is None else max(0.0, deadline - time.monotonic())
            view, raw = self._poll(min(left, _POLL_S))
            if view["status"] in _TERMINAL:
                return view, raw
            if deadline is not None and time.monotonic() >= deadline:
                raise ResultTimeout(f"task {self.id} still {view['status']} after {timeout:g} s")

    def cancel(self) -> dict[str, Any]:
        """Cancel the task: queued, it never starts; running, it is killed. Returns its
        view afterwards: CANCELLED, or the end it already had (then nothing changes)."""
        view = self.client.request("DELETE", f"/v1/tasks/{self.id}")
        self._ended = (view, None) if view["status"] in _TERMINAL else None
        return view

    def logs(self) -> str:
        """What the task printed so far (stdout and stderr), each attempt after an
        `--- attempt N ---` line; at most FAAS_TASK_LOG_MAX_BYTES per attempt."""
        return self.client.request("GET", f"/v1/tasks/{self.id}/logs")["logs"]

    def follow_logs(self) -> Iterator[str]:
        """Output as it is printed, piece by piece, until the task ends."""
        for event, data in self.client.events(f"/v1/tasks/{self.id}/logs", follow="true"):
            if event == "end":
                return
            if event == "log":
                yield json.loads(data)


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except (ValueError, AttributeError):
            detail = response.text[:200]
        raise ApiError(response.status_code, str(detail))


def unwrap(view: dict[str, Any], raw: bytes | None = None) -> Any:
    """Value of a finished task view, or raise what it failed with. `raw`, the
    result pickle when it came apart from the view (see `Client.exchange`)."""
    if raw is None and view.get("result"):
        raw = base64.b64decode(view["result"])
    if view["status"] == "COMPLETED":
        return pickle.loads(raw) if raw is not None else None
    if view["status"] == "CANCELLED":
        raise TaskCancelled(view["task_id"])
    if view.get("error_kind") == "user" and raw:
        exc = pickle.loads(raw)
        if isinstance(exc, BaseException):
            if view.get("error"):
                exc.add_note(f"remote traceback (task {view['task_id']}):\n{view['error']}")
            raise exc
    raise WorkerFailure(
        view["task_id"], view.get("error_kind") or "unknown", view.get("error") or "failed"
    )


def _header_view(headers: httpx.Headers) -> dict[str, Any]:
    """A task view from the X-Faas-* headers of a binary answer (gateway/binary.py)."""
    view: dict[str, Any] = {"result": None}
    for field, kind in _HEADER_FIELDS.items():
        value = headers.get("x-faas-" + field.replace("_", "-"))
        view[field] = None if value is None else kind(value)
    return view


def _with_result_text(view: dict[str, Any], raw: bytes | None) -> dict[str, Any]:
    """The view as JSON answers have it: the result as base64 text."""
    return view if raw is None else {**view, "result": base64.b64encode(raw).decode("ascii")}


def wait_all(
    tasks: list[Task],
    *,
    timeout: float | None = None,
    progress: bool = True,
    return_exceptions: bool = False,
    desc: str | None = None,
    chunk: int = 1000,
) -> list[Any]:
    """Results of `tasks` in order, long-polling the gateway in chunks of ids."""
    if not tasks:
        return []
    client = tasks[0].client
    deadline = None if timeout is None else time.monotonic() + timeout
    views: dict[str, dict[str, Any]] = {}
    pending = [t.id for t in tasks]
    with tqdm(total=len(tasks), desc=desc, disable=not progress, unit="task") as bar:
        while pending:
            left = _POLL_S if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise ResultTimeout(f"{len(pending)} of {len(tasks)} tasks still running")
            ids = pending[:chunk]
            # With a bar, the gateway answers as tasks end, so it moves per task.
            body = {"task_ids": ids, "wait": min(left, _POLL_S), "any": progress}
            for view in client.request("POST", "/v1/tasks/wait", json=body)["tasks"]:
                if view["status"] in _TERMINAL:
                    views[view["task_id"]] = view
            done_now = [t for t in ids if t in views]
            bar.update(len(done_now))
            pending = [t for t in pending if t not in views]
    results = []
    for task in tasks:
        try:
            results.append(unwrap(views[task.id]))
        except Exception as exc:
            if not return_exceptions:
                raise
            results.append(exc)
    return results


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False


def _cancel_outstanding(client: Client, tasks: list[Task]) -> None:
    """After Ctrl-C: cancel what has not ended and say how many, in one line. A
    failure to cancel is one line too (the user interrupted; no traceback)."""
    try:
        views = client.cancel([t.id for t in tasks]) if tasks else []
    except FaasClientError as exc:
        print(f"could not cancel the outstanding tasks: {exc}", file=sys.stderr)
        return
    cancelled = sum(1 for v in views if v["status"] == "CANCELLED")
    print(f"cancelled {cancelled} outstanding tasks", file=sys.stderr, flush=True)


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while True:
        chunk = [item for _, item in zip(range(size), items, strict=False)]
        if not chunk:
            return
        yield chunk
