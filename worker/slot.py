"""What runs inside a slot process: unpickle the function and its arguments, call
it, pickle the outcome. This is the only place user pickles are ever loaded.

Payloads load with dill, which reads plain pickle and cloudpickle output too, and
resolves what only dill writes (a function or class typed in a client's
`__main__` refers to `__builtin__.__main__`). Results are written with plain
pickle where possible (cloudpickle for lambdas and local classes), so any client
loads them with `pickle.loads` or `dill.loads`.

A slot is a child process so that a crash, `os._exit`, a segfault or a deadline
kill in user code costs one slot, which the pool replaces. Libraries users are
likely to need are imported here once, when the fork server preloads this module.

A slot's file descriptors 1 and 2 are the write end of a pipe its worker reads
(`serve`'s `output`): whatever the function prints, from Python, a C extension
or a child process, reaches the worker, which files it under the running task.
"""

from __future__ import annotations

import contextlib
import copyreg
import ctypes
import linecache
import os
import pickle
import resource
import signal
import sys
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import cloudpickle
import dill
import msgpack

from faas import futures, nested

with contextlib.suppress(ImportError):
    import numpy  # noqa: F401  (paid once per fork server, not per task)

_FUNCTION_CACHE_SIZE = 256
_ERROR_TEXT_LIMIT = 8000
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits a slot sets on itself before running user code (0: inherit),
    and the uid/gid it becomes first when the worker runs as root (0: stay root)."""

    memory_bytes: int = 0  # RLIMIT_AS: a MemoryError instead of the OOM killer
    open_files: int = 0  # RLIMIT_NOFILE
    processes: int = 0  # RLIMIT_NPROC (counted per uid: leave headroom for the platform)
    uid: int = 0
    gid: int = 0

    def drop_privileges(self) -> None:
        """As root, become uid/gid with no supplementary groups, for good (real, effective
        and saved ids), so user code cannot read the worker's /proc entries, its files
        or other processes' memory. Not root (the chart's pods): nothing to drop."""
        if os.geteuid() != 0 or not self.uid:
            return
        os.setgroups([])
        os.setresgid(self.gid, self.gid, self.gid)
        os.setresuid(self.uid, self.uid, self.uid)

    def apply(self) -> None:
        for which, value in (
            (resource.RLIMIT_AS, self.memory_bytes),
            (resource.RLIMIT_NOFILE, self.open_files),
            (resource.RLIMIT_NPROC, self.processes),
        ):
            if value:
                resource.setrlimit(which, (value, value))


def serve(
    conn: Connection,
    max_result_bytes: int = 16 * 2**20,
    limits: Limits = Limits(),
    output: Connection | None = None,
) -> None:
    """Slot main loop: (task_id, function_id, function, args, env path, sources,
    futures' results) in,
    ("result", task_id, outcome, result, error) out; in between, the function's
    nested calls go out and their answers come back on the same pipe (`faas.nested`).
    `output`: the write end of the pipe that becomes this process's stdout and stderr."""
    limits.drop_privileges()
    _die_with_parent()  # after: Linux clears the parent-death signal when the uid changes
    if output is not None:
        _capture_output(output)
    limits.apply()
    # Ctrl-C and a group-wide SIGTERM reach slots too; the owning worker decides
    # when a slot stops (it kills it), and PR_SET_PDEATHSIG covers the owner dying.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    functions: OrderedDict[str, Callable[..., Any]] = OrderedDict()
    channel = nested.install(conn, _load_inline)
    while True:
        try:
            task_id, function_id, function, args, env_path, sources, results = conn.recv()
        except (EOFError, OSError):
            return
        channel.begin(task_id)
        if env_path and env_path not in sys.path:  # a slot serves one environment
            sys.path.insert(0, env_path)
        outcome, blob, error = run_call(functions, function_id, function, args, sources, results)
        _flush_output()  # the task's output is in the pipe before its outcome is sent
        if len(blob) > max_result_bytes:
            error = (f"the result pickles to {len(blob):,} bytes, over the "
                     f"{max_result_bytes:,}-byte limit (FAAS_MAX_RESULT_BYTES)")  # fmt: skip
            outcome, blob = "too_large", b""
        conn.send(("result", task_id, outcome, blob, error))


def _load_inline(function_id: str, function: bytes, sources: bytes) -> Callable[..., Any]:
    """A function this slot's task calls inline (see `faas.nested`)."""
    remember_sources(sources)
    return dill.loads(function)


def run_call(
    functions: OrderedDict[str, Callable[..., Any]],
    function_id: str,
    function: bytes,
    args: bytes,
    sources: bytes = b"",
    futures_results: dict[str, bytes] | None = None,
) -> tuple[str, bytes, str]:
    """Returns ("ok", pickled value, ""), ("error", pickled exception, traceback), or
    ("dependency", pickled ModuleNotFoundError, hint) when the function or its
    arguments need a module this worker cannot import. `futures_results`: the results
    of the tasks the arguments refer to (see `faas.futures`), by task id."""
    try:
        fn = functions.get(function_id)
        if fn is None:
            remember_sources(sources)
            fn = dill.loads(function)
            functions[function_id] = fn
            if len(functions) > _FUNCTION_CACHE_SIZE:
                functions.popitem(last=False)
        with futures.results(futures_results or {}):
            call = dill.loads(args)
    except ImportError as exc:
        missing = ModuleNotFoundError(dependency_hint(exc), name=exc.name)
        return "dependency", dump_exception(missing), str(missing)
    except BaseException as exc:
        return "error", dump_exception(exc), describe(exc)
    try:
        positional, keywords = split_call(call)
        value = fn(*positional, **keywords)
    except BaseException as exc:
        return "error", dump_exception(exc), describe(exc)
    try:
        return "ok", _dumps(value), ""
    except Exception as exc:
        wrapped = TypeError(f"result of type {type(value).__name__} cannot be pickled: {exc}")
        return "error", dump_exception(wrapped), describe(wrapped)


def dependency_hint(exc: ImportError) -> str:
    what = f"module {exc.name!r}" if exc.name else "a module"
    return (
        f"the function or its arguments need {what}, which this worker cannot import "
        f"({exc}). Ship it with the task: register through the SDK (your own modules "
        f"travel by value), put the module on the workers' PYTHONPATH, or install the "
        f"package in the worker image."
    )


def split_call(call: object) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The course's call payload is ((args...), {kwargs})."""
    if (
        isinstance(call, tuple | list)
        and len(call) == 2
        and isinstance(call[0], tuple | list)
        and isinstance(call[1], dict)
    ):
        return tuple(call[0]), call[1]
    raise TypeError(
        f"the arguments payload must be ((args...), {{kwargs}}), got {type(call).__name__}"
    )


def _dumps(value: object) -> bytes:
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # lambdas, local classes: cloudpickle pickles them by value
        return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def dump_exception(exc: BaseException) -> bytes:
    """The exception itself if it survives a round trip, else a RuntimeError naming it."""
    for dumps in (pickle.dumps, cloudpickle.dumps):
        try:
            blob = dumps(exc)
            pickle.loads(blob)  # exceptions with custom __init__ often fail only here
            return blob
        except Exception:
            continue
    return pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))


def describe(exc: BaseException) -> str:
    """The traceback the user sees: their frames only (none of the slot's, the
    unpickler's or the platform's), with source lines from `remember_sources`."""
    formatted = traceback.TracebackException.from_exception(exc)
    pending: list[traceback.TracebackException | None] = [formatted]
    seen: set[int] = set()
    while pending:  # the exception, its causes and contexts, a group's members
        te = pending.pop()
        if te is None or id(te) in seen:
            continue
        seen.add(id(te))
        users = [f for f in te.stack if not _is_platform(f.filename)]
        te.stack = traceback.StackSummary.from_list(users)
        pending += [te.__cause__, te.__context__, *(te.exceptions or ())]
    return "".join(formatted.format())[-_ERROR_TEXT_LIMIT:]


def _platform_dirs() -> tuple[str, ...]:
    here = Path(__file__).parent
    dirs = {here, here.parent / "common", Path(dill.__file__).parent,
            Path(cloudpickle.__file__).parent}  # fmt: skip
    dirs |= {d.resolve() for d in dirs}
    return tuple(f"{d}{os.sep}" for d in dirs)


_PLATFORM_DIRS = _platform_dirs()
_PLATFORM_FILES = frozenset({pickle.__file__, copyreg.__file__})


def _is_platform(filename: str) -> bool:
    return filename.startswith(_PLATFORM_DIRS) or filename in _PLATFORM_FILES


def remember_sources(packed: bytes) -> None:
    """Put the source the SDK sent with the function into `linecache` under its
    original file names and line numbers, so its frames in tracebacks show their
    lines though those files are not on this worker. A courtesy: junk is ignored."""
    try:
        entries = msgpack.unpackb(packed) if packed else []
        for file, first, text in entries:
            _remember(str(file), int(first), str(text))
    except Exception:
        return


def _remember(file: str, first: int, text: str) -> None:
    entry = linecache.cache.get(file)
    # Ours have no mtime (checkcache keeps them); a file's own entry is replaced.
    lines = list(entry[2]) if entry and len(entry) == 4 and entry[1] is None else []
    new = text.splitlines(keepends=True)
    lines += ["\n"] * (first - 1 + len(new) - len(lines))
    lines[first - 1 : first - 1 + len(new)] = new
    linecache.cache[file] = (sum(map(len, lines)), None, lines, file)


def _capture_output(output: Connection) -> None:
    """Point fds 1 and 2 at the worker's pipe; line-buffer Python's stdout so a
    running task's prints reach it as they happen (stderr writes through)."""
    for fd in (1, 2):
        os.dup2(output.fileno(), fd)
    output.close()
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):  # user code may have replaced or closed them
            stream.flush()  # type: ignore[union-attr]


def _die_with_parent() -> None:
    """Ask Linux to kill this slot if its parent dies, so a kill -9 of the worker
    leaves no orphan running user code."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
