"""Errors the SDK raises. A user function's own exception is re-raised as itself."""

from __future__ import annotations

from concurrent.futures import CancelledError


class FaasClientError(Exception):
    """Base of the SDK's own errors."""


class ApiError(FaasClientError):
    """The gateway answered with an error status."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class GatewayUnreachable(FaasClientError):
    """No answer from the gateway at all: not started, wrong host or port, a proxy
    in the way. The httpx error is kept as `reason` (and not chained, so that an
    uncaught one prints a readable line rather than the transport's traceback)."""

    def __init__(self, url: str, reason: Exception) -> None:
        detail = str(reason) or type(reason).__name__
        super().__init__(
            f"cannot reach the faas gateway at {url} ({detail}): is `faas up` running?"
        )
        self.url = url
        self.reason = reason


class WorkerFailure(FaasClientError):
    """The task failed for a reason other than its own exception: its deadline
    passed, its workers kept dying, or its function was deleted."""

    def __init__(self, task_id: str, kind: str, message: str) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.kind = kind


class ResultTimeout(FaasClientError, TimeoutError):
    """The task did not end within the time the caller was willing to wait."""


class TaskCancelled(FaasClientError, CancelledError):
    """The task was cancelled (`Task.cancel`, `Client.cancel`, `faas cancel`) before it
    ended: it has no result."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} was cancelled")
        self.task_id = task_id
