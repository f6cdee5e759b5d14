"""`python -m controller` (the image's `controller` command): the WorkerPool
operator for one namespace (FAAS_NAMESPACE), with a liveness endpoint on
FAAS_HEALTH_PORT and JSON logs when FAAS_LOG_JSON is set."""

from __future__ import annotations

import kopf

from common import metrics
from controller.handlers import build_registry
from controller.settings import ControllerSettings


def main() -> None:
    settings = ControllerSettings()
    kopf.configure(
        verbose=settings.log_level.upper() == "DEBUG",
        log_format=kopf.LogFormat.JSON if settings.log_json else kopf.LogFormat.FULL,
    )
    metrics.serve(settings.metrics_port)
    liveness = f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
    kopf.run(
        registry=build_registry(settings),
        standalone=True,  # one replica (Recreate): no peering objects needed
        namespaces=[settings.namespace],
        liveness_endpoint=liveness,
    )


if __name__ == "__main__":
    main()
