"""Cross-checks of rendered manifests. Each returns a list of problems (empty when
the manifests agree), so a test can also show them catching a broken chart."""

from __future__ import annotations

from typing import Any

Doc = dict[str, Any]
WORKLOADS = {"Deployment", "StatefulSet"}


def by_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d.get("kind") == kind]


def pod_spec(doc: Doc) -> Doc:
    return doc["spec"]["template"]["spec"] if doc["kind"] in {*WORKLOADS, "Job"} else doc["spec"]


def pod_labels(doc: Doc) -> dict[str, str]:
    return doc["spec"]["template"]["metadata"]["labels"]


def selector_problems(docs: list[Doc]) -> list[str]:
    problems = []
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            wanted = doc["spec"]["selector"]["matchLabels"]
            labels = pod_labels(doc)
            if any(labels.get(k) != v for k, v in wanted.items()):
                problems.append(
                    f"{doc['kind']}/{doc['metadata']['name']}: selector {wanted} misses pod labels"
                )
    for pdb in by_kind(docs, "PodDisruptionBudget"):
        wanted = pdb["spec"]["selector"]["matchLabels"]
        if not any(
            all(pod_labels(w).get(k) == v for k, v in wanted.items())
            for w in docs
            if w["kind"] in WORKLOADS
        ):
            problems.append(f"PodDisruptionBudget/{pdb['metadata']['name']} selects no pods")
    return problems


def service_problems(docs: list[Doc]) -> list[str]:
    """Every Service selects a workload, and each targetPort is one of its container ports."""
    problems = []
    for service in by_kind(docs, "Service"):
        wanted = service["spec"]["selector"]
        targets = [
            w
            for w in docs
            if w["kind"] in WORKLOADS and all(pod_labels(w).get(k) == v for k, v in wanted.items())
        ]
        name = service["metadata"]["name"]
        if not targets:
            problems.append(f"Service/{name} selects no workload")
            continue
        ports = {
            p.get("name") or p["containerPort"]
            for w in targets
            for c in pod_spec(w)["containers"]
            for p in c.get("ports", [])
        } | {
            p["containerPort"]
            for w in targets
            for c in pod_spec(w)["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            if port.get("targetPort", port["port"]) not in ports:
                problems.append(
                    f"Service/{name}: targetPort {port.get('targetPort')} is no container port"
                )
    return problems


def probe_problems(docs: list[Doc]) -> list[str]:
    """Every HTTP probe points at a named port its container has."""
    problems = []
    for doc in docs:
        if doc["kind"] not in WORKLOADS:
            continue
        for container in pod_spec(doc)["containers"]:
            names = {p.get("name") for p in container.get("ports", [])}
            for kind in ("livenessProbe", "readinessProbe"):
                probe = container.get(kind, {}).get("httpGet")
                if probe and probe["port"] not in names:
                    problems.append(
                        f"{doc['metadata']['name']}/{container['name']}: {kind} port {probe['port']}"
                    )
    return problems


def env_of(docs: list[Doc], component: str) -> dict[str, Any]:
    for doc in docs:
        if (
            doc["kind"] in WORKLOADS
            and pod_labels(doc).get("app.kubernetes.io/component") == component
        ):
            (container,) = pod_spec(doc)["containers"]
            return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}
    raise KeyError(component)


def containers_of(docs: list[Doc], component: str) -> list[Doc]:
    return [
        c
        for doc in docs
        if doc["kind"] in WORKLOADS
        and pod_labels(doc).get("app.kubernetes.io/component") == component
        for c in pod_spec(doc)["containers"]
    ]


def expansion_problems(docs: list[Doc]) -> list[str]:
    """Kubernetes expands $(VAR) in env values and args only from variables defined
    *earlier* in the same container; otherwise the text stays literally `$(VAR)`."""
    import re

    problems = []
    for doc in docs:
        if doc["kind"] not in WORKLOADS:
            continue
        for container in pod_spec(doc)["containers"]:
            defined: set[str] = set()
            for env in container.get("env", []):
                for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", env.get("value") or ""):
                    if ref not in defined:
                        problems.append(f"{doc['metadata']['name']}: {env['name']} uses $({ref})")
                defined.add(env["name"])
            for arg in [*container.get("command", []), *container.get("args", [])]:
                for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(arg)):
                    if ref not in defined:
                        problems.append(f"{doc['metadata']['name']}: an argument uses $({ref})")
    return problems


def _selects(selector: Doc, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels, matchExpressions with In/NotIn/Exists/DoesNotExist)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def ingress_allowed(
    docs: list[Doc],
    *,
    source: dict[str, str],
    target: dict[str, str],
    port: str,
    source_namespace: dict[str, str] | None = None,
) -> bool:
    """Whether the NetworkPolicies let a pod labelled `source` (in the release's
    namespace unless source_namespace gives another namespace's labels) reach a pod
    labelled `target` on its named port. Unselected targets are open; a selected
    target is reachable only through a rule that matches the source and the port."""
    policies = [
        p
        for p in by_kind(docs, "NetworkPolicy")
        if "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
        and _selects(p["spec"]["podSelector"], target)
    ]
    if not policies:
        return True
    for policy in policies:
        for rule in policy["spec"].get("ingress") or []:
            ports = rule.get("ports")
            if ports and not any(p.get("port") == port for p in ports):
                continue
            peers = rule.get("from")
            if peers is None:
                return True
            for peer in peers:
                namespace_selector = peer.get("namespaceSelector")
                pod_selector = peer.get("podSelector")
                if namespace_selector is None:
                    if source_namespace is None and _selects(pod_selector or {}, source):
                        return True
                elif (
                    source_namespace is not None
                    and _selects(namespace_selector, source_namespace)
                    and (pod_selector is None or _selects(pod_selector, source))
                ):
                    return True
    return False
