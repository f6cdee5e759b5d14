"""Settings every component shares. Each component subclasses `BaseFaasSettings`;
all read `FAAS_*` environment variables, one variable per field."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class BaseFaasSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FAAS_", use_attribute_docstrings=True, extra="ignore", frozen=True
    )

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis holding functions, tasks, the queue and results."""
    key_prefix: str = "faas"
    """Prefix of every Redis key, so several platforms (or tests) can share one Redis."""
    log_level: str = "INFO"
    health_port: int = 0
    """Port of the /healthz and /readyz endpoint of the dispatcher and workers; 0: none."""
    metrics_port: int = 0
    """Port of the Prometheus /metrics endpoint of the dispatcher, workers and
    controller; 0: none (the gateway serves /metrics on its own port)."""
    log_json: bool = False
    """Log JSON lines (for a cluster's log collector) instead of plain text."""
    result_ttl_s: int = 86400
    """How long a finished task (and its result) is kept; 0 keeps it forever."""
