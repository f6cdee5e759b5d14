"""The Kubernetes permissions the controller uses, as (apiGroup, resource, verb).
The chart's Role must grant exactly these (tests/chart checks it): Kopf lists and
watches WorkerPools and pods and patches WorkerPools (its own bookkeeping) and
their status; scaling goes through the Deployment's scale subresource; Kopf posts
Events."""

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
