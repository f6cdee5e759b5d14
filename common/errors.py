"""The platform's error tree. Third-party errors are translated where they enter.

FaasError
├── StoreUnavailable      Redis is unreachable or timed out
│   └── StoreFull         Redis is at its memory limit and refuses writes
├── ProtocolError         a ZeroMQ frame that is malformed or of another version
├── InvalidPayload        not strict base64 of a well-formed pickle, or too large
├── InvalidId             a function or task id that is not a UUID
├── IdempotencyConflict   an idempotency key reused for a different request
├── QuotaExceeded         a tenant's unfinished tasks would pass its quota
├── FunctionNotFound
└── TaskNotFound
"""

from __future__ import annotations


class FaasError(Exception):
    """Base of every error the platform raises on purpose."""


class StoreUnavailable(FaasError):
    """Redis could not be reached; the caller may retry later."""


class StoreFull(StoreUnavailable):
    """Redis answered OOM (maxmemory reached): writes fail until memory is freed or
    the limit raised. A StoreUnavailable, so whoever retries those retries this."""


class ProtocolError(FaasError):
    """A ZeroMQ message that does not follow `common.wire`."""


class InvalidPayload(FaasError):
    """A payload that is not base64 text of a well-formed pickle."""


class InvalidId(FaasError):
    """An id that is not a canonical UUID."""


class IdempotencyConflict(FaasError):
    """The idempotency key was first used with another function, payload or options."""

    def __init__(self, key: str, task_id: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was already used for a different request"
            f" (task {task_id}); use a new key for a new request"
        )
        self.key = key
        self.task_id = task_id


class QuotaExceeded(FaasError):
    """The tasks submitted would take the tenant past its most unfinished tasks."""

    def __init__(self, tenant: str, unfinished: int, quota: int, asked: int) -> None:
        super().__init__(
            f"tenant {tenant!r} has {unfinished} unfinished (queued or running) tasks and"
            f" may have at most {quota}, so {asked} more cannot be queued; nothing was"
            " queued: retry once some have ended"
        )
        self.tenant = tenant
        self.unfinished = unfinished
        self.quota = quota


class FunctionNotFound(FaasError):
    def __init__(self, function_id: str) -> None:
        super().__init__(f"function {function_id} not found")
        self.function_id = function_id


class TaskNotFound(FaasError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} not found")
        self.task_id = task_id
