"""Futures as arguments: a submitted task passed to `submit` stands for its result.

    total = add.submit(double.submit(1), double.submit(2))   # or faas.then(add, a, b)

Pickled among a submit's arguments, a `Task` (or, in a slot, a `NestedTask`) becomes
a reference to its id (`_resolve`), and that id is collected as a dependency of the
new task. The platform keeps the new task WAITING, holding no slot and no process,
until its dependencies complete; the slot that then runs it unpickles each reference
as that task's result. If a dependency fails or is cancelled, the task ends FAILED
with error_kind `dependency_failed` without running. Dependencies are the caller's
own tasks, at most 1,000 per task (with 64 MiB of results in all).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

_collected: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "faas_futures_collected", default=None
)
_results: dict[str, bytes] | None = None
"""In a slot, while a task's arguments load: its dependencies' results by task id."""


def reference(task_id: str) -> tuple[Any, ...]:
    """What a task pickles as (its `__reduce__`): noted as a dependency of the
    submit whose arguments are being pickled, resolved to its result in the slot."""
    collected = _collected.get()
    if collected is not None and task_id not in collected:
        collected.append(task_id)
    return _resolve, (task_id,)


def _resolve(task_id: str) -> Any:
    import dill  # slots load with dill (see worker.slot); imported where it runs

    if _results is None or task_id not in _results:
        raise LookupError(
            f"task {task_id} was pickled outside a submit's arguments: pass tasks to"
            " submit (or faas.then) to have their results as arguments"
        )
    return dill.loads(_results[task_id])


@contextlib.contextmanager
def collecting() -> Iterator[list[str]]:
    """Collect the ids of the tasks pickled within (a submit's dependencies)."""
    collected: list[str] = []
    token = _collected.set(collected)
    try:
        yield collected
    finally:
        _collected.reset(token)


@contextlib.contextmanager
def results(found: dict[str, bytes]) -> Iterator[None]:
    """Resolve references to these tasks while the arguments load (in a slot)."""
    global _results
    _results = found
    try:
        yield
    finally:
        _results = None


def then(fn: Any, *futures: Any, **kwargs: Any) -> Any:
    """Submit `fn(*futures, **kwargs)` to run once the tasks among the arguments have
    completed, with their results in their places; returns its task. `fn` is a
    RemoteFunction (or, inside a function, a captured one)."""
    return fn.submit(*futures, **kwargs)
