"""The Kubernetes permissions the controller uses, as (apiGroup, resource, verb).
The chart's Role must grant exactly these (tests/chart checks it): Kopf lists and
watches WorkerPools and worker pods (the pods' watch also tells which ones wait
for a node: no extra read); the scaler patches a WorkerPool's status, and the
WorkerPool itself only to remove the finalizer an older version's Kopf timer put
there; scaling goes through the Deployment's scale subresource; Events are
created (scaling decisions, lost workers)."""

from __future__ import annotations

REQUIRED_RULES: frozenset[tuple[str, str, str]] = frozenset(
    {
        ("faas.dev", "workerpools", "list"),
        ("faas.dev", "workerpools", "watch"),
        ("faas.dev", "workerpools", "patch"),
        ("faas.dev", "workerpools/status", "patch"),
        ("apps", "deployments/scale", "get"),
        ("apps", "deployments/scale", "patch"),
        ("", "pods", "list"),
        ("", "pods", "watch"),
        ("", "events", "create"),
    }
)
