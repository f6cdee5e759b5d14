"""faas: run Python functions on a pool of workers.

The SDK (`Client`, `RemoteFunction`, `Task`, `then`), the `faas` command line, and the
local platform launcher that `faas up` uses.
"""

from faas.client import Client, RemoteFunction, Task, wait_all
from faas.errors import (
    ApiError,
    FaasClientError,
    GatewayUnreachable,
    ResultTimeout,
    TaskCancelled,
    WorkerFailure,
)
from faas.futures import then
from faas.nested import NestedCallError

__all__ = [
    "ApiError",
    "Client",
    "FaasClientError",
    "GatewayUnreachable",
    "NestedCallError",
    "RemoteFunction",
    "ResultTimeout",
    "Task",
    "TaskCancelled",
    "WorkerFailure",
    "then",
    "wait_all",
]
