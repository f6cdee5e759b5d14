"""Static checks of the chart's Prometheus wiring: each component serves /metrics
where its annotations and Service say, the NetworkPolicies let only the scraper in,
the ServiceMonitor selects those Services, and the dashboard queries metrics the
code defines."""

from __future__ import annotations

import json
import re

import pytest
from prometheus_client.metrics import MetricWrapperBase

from controller import metrics as controller_metrics
from dispatcher import metrics as dispatcher_metrics
from gateway import metrics as gateway_metrics
from tests.chart.checks import by_kind, containers_of, env_of, ingress_allowed, pod_labels
from tests.chart.conftest import CHART, documents
from worker import metrics as worker_metrics

SCRAPER_NS = {"kubernetes.io/metadata.name": "monitoring"}
PROMETHEUS = {"app.kubernetes.io/name": "prometheus"}


def workload(docs: list[dict], component: str) -> dict:
    (doc,) = [d for d in by_kind(docs, "Deployment") + by_kind(docs, "StatefulSet")
              if pod_labels(d).get("app.kubernetes.io/component") == component]  # fmt: skip
    return doc


@pytest.mark.parametrize("mode", ["local", "pull"])
def test_each_component_serves_metrics_where_its_annotations_say(helm: str, mode: str) -> None:
    docs = documents(helm, f"mode={mode}")
    components = ["gateway", "dispatcher", "controller"] + ([] if mode == "local" else ["worker"])
    for component in components:
        annotations = workload(docs, component)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        port = int(annotations["prometheus.io/port"])
        (container,) = containers_of(docs, component)
        names = {p["containerPort"]: p["name"] for p in container["ports"]}
        assert port in names, f"{component}: annotated port {port} is not a container port"
        if component == "gateway":
            assert env_of(docs, component)["FAAS_METRICS_ENABLED"] == "true"
        else:
            assert names[port] == "metrics"
            assert env_of(docs, component)["FAAS_METRICS_PORT"] == str(port)
        labels = pod_labels(workload(docs, component))
        assert ingress_allowed(docs, source=PROMETHEUS, target=labels, port=names[port],
                               source_namespace=SCRAPER_NS), component  # fmt: skip
        # ...and nothing else from outside gains a way in.
        assert not ingress_allowed(docs, source=PROMETHEUS, target=labels, port=names[port],
                                   source_namespace={"kubernetes.io/metadata.name": "other"})  # fmt: skip
    if mode != "local":
        worker = pod_labels(workload(docs, "worker"))
        gateway = pod_labels(workload(docs, "gateway"))
        assert not ingress_allowed(docs, source=gateway, target=worker, port="metrics")


def test_metrics_off_leaves_no_port_annotation_or_service(helm: str) -> None:
    docs = documents(helm, "mode=pull", "metrics.enabled=false")
    text = json.dumps(docs)
    assert "prometheus.io" not in text and "FAAS_METRICS_PORT" not in text
    assert not [s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-metrics")]
    assert env_of(docs, "gateway")["FAAS_METRICS_ENABLED"] == "false"


def test_the_service_monitor_selects_every_metrics_service(helm: str) -> None:
    docs = documents(helm, "mode=pull", "metrics.serviceMonitor.enabled=true",
                     "metrics.serviceMonitor.labels.release=kube-prometheus")  # fmt: skip
    (monitor,) = by_kind(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    wanted = monitor["spec"]["selector"]["matchLabels"]
    selected = [s for s in by_kind(docs, "Service")
                if all(s["metadata"]["labels"].get(k) == v for k, v in wanted.items())]  # fmt: skip
    ports = {p["name"] for s in selected for p in s["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == ports == {"metrics", "http"}
    components = {s["metadata"]["labels"]["app.kubernetes.io/component"] for s in selected}
    assert components == {"gateway", "dispatcher", "worker", "controller"}
    for service in selected:  # each selects the pods of its own component
        component = service["metadata"]["labels"]["app.kubernetes.io/component"]
        assert pod_labels(workload(docs, component)).items() >= service["spec"]["selector"].items()
    assert not by_kind(documents(helm, "mode=pull"), "ServiceMonitor"), "off by default"


def test_the_dashboard_configmap_queries_metrics_the_code_defines(helm: str) -> None:
    docs = documents(helm, "metrics.dashboard.enabled=true")
    (config,) = [
        c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")
    ]
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config["data"]["faas.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "faas.json").read_text())
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"\b(faas_[a-z_]+)", target["expr"])}  # fmt: skip
    defined = set()
    for module in (controller_metrics, dispatcher_metrics, gateway_metrics, worker_metrics):
        for value in vars(module).values():
            if not isinstance(value, MetricWrapperBase):
                continue
            for metric in value.describe():
                defined |= {s for s in (metric.name, f"{metric.name}_total",
                            f"{metric.name}_bucket", f"{metric.name}_count")}  # fmt: skip
    assert queried and queried <= defined, queried - defined
