from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from common.settings import BaseFaasSettings


class GatewaySettings(BaseFaasSettings):
    gateway_host: str = "127.0.0.1"
    """Address to listen on; only this machine by default. 0.0.0.0 (all) only when asked,
    e.g. in a container."""
    gateway_port: int = Field(default=8000, ge=1, le=65535)
    metrics_enabled: bool = True
    """Serve Prometheus metrics at /metrics (open, like /healthz: aggregates only)."""
    gateway_workers: int = Field(default=1, ge=1)
    """Gateway server processes."""
    max_payload_bytes: int = Field(default=16 * 2**20, ge=1)
    """Largest function or arguments pickle accepted (decoded size)."""
    max_request_bytes: int = Field(default=64 * 2**20, ge=1)
    """Largest HTTP request body; larger ones get 413."""
    max_pickle_opcodes: int = Field(default=2_000_000, ge=1)
    """Most opcodes a payload's pickle may have: bounds the CPU its check costs (~0.4 s)."""
    max_batch_size: int = Field(default=10_000, ge=1)
    max_wait_ids: int = Field(default=10_000, ge=1)
    """Most task ids one `POST /v1/tasks/wait` may name."""
    default_deadline_s: float = Field(default=300.0, gt=0)
    """Deadline of a task that does not set its own."""
    max_deadline_s: float = Field(default=86_400.0, gt=0)
    default_max_attempts: int = Field(default=3, ge=1, le=100)
    """Executions of a task whose worker keeps dying before it FAILS."""
    max_wait_s: float = Field(default=60.0, ge=0)
    """Longest long-poll (`?wait=`) the gateway holds a request for."""
    idempotency_ttl_s: int = Field(default=86_400, ge=1)
    expire_after_read_s: int = Field(default=60, ge=1)
    """How long an ended task that asked for `expire_after_read` is kept once a response
    carried its result (never longer than its own TTL)."""
    redis_max_connections: int = Field(default=100, ge=2)
    """Connections to Redis per gateway process; beyond that, calls queue for one."""
    redis_pool_timeout_s: float = Field(default=20.0, gt=0)
    """How long a call waits for a free Redis connection before answering 503."""
    header_timeout_s: float = Field(default=10.0, gt=0)
    """A client must send a request's line and headers within this (slowloris guard)."""
    body_idle_timeout_s: float = Field(default=30.0, gt=0)
    """A request body that stalls, no byte arriving, this long is dropped (slowloris)."""
    keep_alive_timeout_s: float = Field(default=5.0, gt=0)
    """An idle keep-alive connection is closed after this."""
    api_key: SecretStr | None = None
    """If set, every call but the health checks (the API docs too) needs
    `Authorization: Bearer <key>` or `X-API-Key: <key>`; checked before the body is read.
    This key is the `default` tenant's."""
    api_keys_file: Path | None = None
    """A file of `TENANT:SHA256-HEX-OF-KEY[:MAX_UNFINISHED]` lines (`faas keys new TENANT`
    makes one): each key is its tenant's, and every call needs one of them (or `api_key`).
    Tenants see only their own functions, tasks and idempotency keys."""
    max_unfinished_tasks: int = Field(default=100_000, ge=1)
    """Most queued + running tasks a tenant may have; more are refused (429). A line
    of the keys file may set its tenant's own."""
