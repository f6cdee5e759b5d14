"""Task states, failure kinds and the records read back from the store."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from common.errors import InvalidId
from common.tenants import DEFAULT_TENANT

MAX_DEPENDENCIES = 1000
"""Most tasks (futures) one task may take as arguments."""
MAX_DEPENDENCY_BYTES = 64 * 2**20
"""Most bytes of dependencies' results one task may take (sent in its TASK message)."""
MAX_RESULT_TTL_S = 30 * 86_400
"""Longest a task or function may ask its ended tasks to be kept."""


class TaskStatus(StrEnum):
    WAITING = "WAITING"  # for its dependencies (futures among its arguments) to complete
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


class ErrorKind(StrEnum):
    """Why a task FAILED (or `CANCELLED`); only `USER` means the user's function raised."""

    USER = "user"
    DEADLINE = "deadline"
    WORKER_LOST = "worker_lost"
    FUNCTION_MISSING = "function_missing"
    RESULT_TOO_LARGE = "result_too_large"
    DEPENDENCY = "dependency"
    DEPENDENCY_FAILED = "dependency_failed"  # a task among its arguments did not complete
    ARGUMENTS_LOST = "arguments_lost"  # its arguments, kept apart in Redis, were gone
    CANCELLED = "cancelled"


class DispatchMode(StrEnum):
    LOCAL = "local"
    PULL = "pull"
    PUSH = "push"


def new_id() -> str:
    return str(uuid.uuid4())


def check_id(value: str, what: str) -> str:
    """Return `value` if it is a canonical UUID, else raise InvalidId (a 400 at the gateway)."""
    try:
        if str(uuid.UUID(value)) == value.lower():
            return value.lower()
    except (ValueError, AttributeError):
        pass
    raise InvalidId(f"{what} must be a UUID like 123e4567-e89b-12d3-a456-426614174000")


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A task as the store holds it; `result` is raw pickle bytes or None."""

    task_id: str
    function_id: str
    status: TaskStatus
    attempt: int
    max_attempts: int
    deadline_s: float
    queued_at_ms: int
    started_at_ms: int | None
    finished_at_ms: int | None
    worker_id: str | None
    error: str | None
    error_kind: ErrorKind | None
    result: bytes | None
    tenant: str = DEFAULT_TENANT
    expire_after_read: bool = False  # kept only briefly once a response carried its result


@dataclass(frozen=True, slots=True)
class Retention:
    """How long ended tasks are kept, as a task or function chose; None leaves it to
    the function, then to the `result_ttl_s` setting."""

    result_ttl_s: int | None = None  # 1 .. MAX_RESULT_TTL_S
    expire_after_read: bool | None = None  # then kept only briefly once its result is read


DEFAULT_RETENTION = Retention()


@dataclass(frozen=True, slots=True)
class FunctionEnv:
    """What a function needs beyond the worker image: pip requirements, and code
    bundles (zip files, stored once by their SHA-256)."""

    requirements: tuple[str, ...] = ()
    bundles: tuple[str, ...] = ()  # SHA-256 hex digests of the zip files

    def __bool__(self) -> bool:
        return bool(self.requirements or self.bundles)


@dataclass(frozen=True, slots=True)
class FunctionCode:
    """What the dispatcher sends with each task of a function."""

    payload: bytes
    env: FunctionEnv = FunctionEnv()
    # msgpack [[file, first line, text], ...] as the SDK sent it, for tracebacks;
    # only the slot decodes it.
    sources: bytes = b""
    tenant: str = "default"  # whose function it is


@dataclass(frozen=True, slots=True)
class FunctionRecord:
    function_id: str
    name: str
    created_at_ms: int
    size_bytes: int
