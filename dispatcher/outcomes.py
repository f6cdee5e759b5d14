"""What a worker's report means for the store: an Outcome to commit, or a lost
attempt to re-queue. Failures decided by the platform (not by user code) carry a
builtin exception as their result, so any client can unpickle it without our
packages."""

from __future__ import annotations

import pickle
from typing import Any

from common.models import ErrorKind, TaskStatus
from common.store import Outcome, QueueEntry


def failure(error: BaseException) -> bytes:
    return pickle.dumps(error)


def ended(
    entry: QueueEntry,
    status: TaskStatus,
    result: bytes,
    error: str = "",
    kind: ErrorKind | None = None,
) -> Outcome:
    return Outcome(entry.task_id, entry.entry_id, entry.attempt, status, result, error, kind,
                   depth=entry.depth)  # fmt: skip


def failed(entry: QueueEntry, error: BaseException, kind: ErrorKind) -> Outcome:
    return ended(entry, TaskStatus.FAILED, failure(error), str(error), kind)


def function_missing(entry: QueueEntry) -> Outcome:
    error = LookupError(f"function {entry.function_id} was deleted before the task ran")
    return failed(entry, error, ErrorKind.FUNCTION_MISSING)


def arguments_lost(entry: QueueEntry) -> Outcome:
    """Its arguments, kept apart (Store.args_apart_bytes), were gone from the store:
    only an operator's hand or a partly lost Redis does that."""
    error = LookupError(f"the arguments of task {entry.task_id} are missing from the store")
    return failed(entry, error, ErrorKind.ARGUMENTS_LOST)


def dependency_failed(entry: QueueEntry, reason: str) -> Outcome:
    """A task whose futures' results cannot be had (see Store.dependency_results)."""
    return failed(entry, RuntimeError(reason), ErrorKind.DEPENDENCY_FAILED)


def overdue(entry: QueueEntry) -> Outcome:
    """The worker never reported the deadline it should have enforced."""
    error = TimeoutError(f"WorkerFailure: task exceeded deadline of {entry.deadline_s:g} s")
    return failed(entry, error, ErrorKind.DEADLINE)


def from_result(entry: QueueEntry, header: dict[str, Any], blobs: list[bytes]) -> Outcome | str:
    """A RESULT message as an Outcome, or the reason its attempt was lost."""
    kind = header["outcome"]
    error = str(header.get("error") or "")
    blob = blobs[0] if blobs else b""
    if kind == "ok":
        return ended(entry, TaskStatus.COMPLETED, blob)
    if kind == "error":
        return ended(entry, TaskStatus.FAILED, blob, error, ErrorKind.USER)
    if kind == "dependency":
        return ended(entry, TaskStatus.FAILED, blob, error, ErrorKind.DEPENDENCY)
    if kind == "deadline":
        return failed(entry, TimeoutError(error), ErrorKind.DEADLINE)
    if kind == "too_large":
        return failed(entry, ValueError(error), ErrorKind.RESULT_TOO_LARGE)
    return error or f"worker reported {kind!r}"  # "lost", or unknown: it did not finish
