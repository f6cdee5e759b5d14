from __future__ import annotations

from pydantic import Field

from common.settings import BaseFaasSettings


class ControllerSettings(BaseFaasSettings):
    namespace: str = "default"
    """Namespace watched (WorkerPools, worker pods); the chart passes the release's."""
    worker_pod_selector: str = "app.kubernetes.io/component=worker"
    """Label selector of worker pods (key=value)."""
    reconcile_interval_s: float = Field(default=2.0, gt=0)
    """How often each WorkerPool is reconciled against the queue depth."""
