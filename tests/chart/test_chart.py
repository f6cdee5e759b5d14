"""Static checks of the Helm chart (no cluster here): lint, render every mode with
default and non-default values, validate against the Kubernetes schemas and the
CRD, and cross-check what the chart sets against what the code reads."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from common.tenants import parse_keys
from controller.rbac import REQUIRED_RULES
from controller.settings import ControllerSettings
from dispatcher.settings import DispatcherSettings
from gateway.settings import GatewaySettings
from tests.chart.checks import (
    by_kind,
    env_of,
    expansion_problems,
    pod_spec,
    probe_problems,
    selector_problems,
    service_problems,
)
from tests.chart.conftest import CHART, ROOT, copy_chart, documents, render
from worker.settings import WorkerSettings

KUBERNETES_VERSION = "1.33.0"
VARIANTS = {
    "local": ["mode=local"],
    "pull": ["mode=pull"],
    "push": ["mode=push"],
    "pull-custom": [
        "mode=pull", "apiKey.enabled=true", "gateway.autoscaling.enabled=true",
        "gateway.ingress.enabled=true", "gateway.ingress.host=faas.example.com",
        "gateway.ingress.tls.enabled=true", "gateway.ingress.tls.secretName=faas-tls",
        "redis.enabled=false", "externalRedis.url=redis://redis.example:6379/0",
        "worker.slots=8", "controller.enabled=false", f"tenants.keys[0]=alice:{'a' * 64}",
    ],
    "push-no-controller": ["mode=push", "controller.enabled=false", "redis.storage.storageClassName=fast"],
    "pull-user-code": [
        "mode=pull", "userCode.configMap=course-code", "userCode.package=tests",
        "worker.image.repository=faas-course", "worker.extraEnv[0].name=X", "worker.extraEnv[0].value=on",
        "worker.extraVolumes[0].name=v", "worker.extraVolumes[0].emptyDir.sizeLimit=1Gi",
        "worker.extraVolumeMounts[0].name=v", "worker.extraVolumeMounts[0].mountPath=/v",
        "priorityClasses.create=false", "priorityClasses.core.name=high", "redis.image.tag=7",
        "redis.auth.existingSecret=redis-pw",
    ],
    "local-user-code": ["mode=local", "userCode.configMap=course-code", "networkPolicy.enabled=false"],
    "push-link-secret": ["mode=push", "workerLink.existingSecret=faas-link-keys",
                         "tenants.existingSecret=faas-tenants"],
    "pull-plain-link": ["mode=pull", "workerLink.enabled=false"],
}  # fmt: skip
SETTINGS = {
    "gateway": GatewaySettings,
    "dispatcher": DispatcherSettings,
    "worker": WorkerSettings,
    "controller": ControllerSettings,
}
# Not read by our settings but by Python, or by the expansion of FAAS_REDIS_URL.
# Read by Python, by the $(REDIS_PASSWORD) expansion, and by pip (functions' environments).
ALWAYS_SET = {"PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "REDIS_PASSWORD", "PIP_CACHE_DIR"}


@pytest.fixture(scope="module", params=list(VARIANTS), ids=list(VARIANTS))
def rendered(request: pytest.FixtureRequest, helm: str) -> tuple[str, list[dict]]:
    return request.param, documents(helm, *VARIANTS[request.param])


def test_helm_lint_strict_passes(helm: str) -> None:
    for sets in VARIANTS.values():
        argv = [helm, "lint", "--strict", str(CHART)]
        for item in sets:
            argv += ["--set", item]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


def test_manifests_are_valid_kubernetes(rendered: tuple[str, list[dict]]) -> None:
    _, docs = rendered
    for doc in docs:
        if doc["apiVersion"].startswith("faas.dev/"):
            continue  # validated against the CRD below
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_workerpool_objects_match_the_crd_schema(rendered: tuple[str, list[dict]]) -> None:
    mode, docs = rendered
    crd = yaml.safe_load((ROOT / "manifests/crds/workerpools.faas.dev.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    pools = by_kind(docs, "WorkerPool")
    controller_on = "controller.enabled=false" not in VARIANTS[mode]
    assert len(pools) == (1 if controller_on and not mode.startswith("local") else 0)
    for pool in pools:
        jsonschema.validate(pool, schema)
        workers = [
            d
            for d in by_kind(docs, "Deployment")
            if d["metadata"]["name"] == pool["spec"]["deployment"]
        ]
        assert workers, "the WorkerPool drives the release's worker Deployment"
    kubernetes_validate.validate(crd, KUBERNETES_VERSION, strict=True)


def test_selectors_services_and_probes_agree(rendered: tuple[str, list[dict]]) -> None:
    _, docs = rendered
    assert selector_problems(docs) == []
    assert service_problems(docs) == []
    assert probe_problems(docs) == []
    assert expansion_problems(docs) == []


def test_the_env_the_chart_sets_is_the_env_the_code_reads(rendered: tuple[str, list[dict]]) -> None:
    mode, docs = rendered
    for component, settings in SETTINGS.items():
        try:
            env = env_of(docs, component)
        except KeyError:
            continue
        fields = set(settings.model_fields)
        if component == "dispatcher" and mode.startswith("local"):
            fields |= set(WorkerSettings.model_fields)  # its worker loop reads the same env
        known = {f"FAAS_{name.upper()}" for name in fields} | ALWAYS_SET
        extra = {  # the names users add themselves (worker.extraEnv)
            item.split("=", 1)[1]
            for item in VARIANTS[mode]
            if re.match(r"worker\.extraEnv\[\d+\]\.name=", item)
        }
        unknown = set(env) - known - extra
        assert not unknown, f"{component} sets variables its code ignores: {unknown}"
    assert env_of(docs, "dispatcher")["FAAS_MODE"] == mode.split("-")[0]
    if not mode.startswith("local"):
        worker = env_of(docs, "worker")
        assert worker["FAAS_MODE"] == mode.split("-")[0]
        assert worker["FAAS_WORKER_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert worker["FAAS_DISPATCHER_URL"].endswith(":5556")
        assert "FAAS_REDIS_URL" not in worker, "workers never talk to Redis"
    for component in ("gateway", "dispatcher"):
        assert env_of(docs, component)["FAAS_REDIS_URL"].startswith("redis://")


def test_local_mode_has_no_worker_deployment_and_modes_switch_everything(helm: str) -> None:
    local = documents(helm, "mode=local")
    assert not [d for d in local if d["metadata"]["name"].endswith("-worker")]
    assert not [
        d for d in by_kind(local, "Service") if d["metadata"]["name"].endswith("-dispatcher")
    ]
    pull = documents(helm, "mode=pull")
    assert [d for d in by_kind(pull, "Deployment") if d["metadata"]["name"] == "faas-worker"]


def test_every_pod_is_hardened(rendered: tuple[str, list[dict]]) -> None:
    _, docs = rendered
    for doc in docs:
        if doc["kind"] not in {"Deployment", "StatefulSet", "Pod", "Job"}:
            continue
        spec = pod_spec(doc)
        # Only the controller and the worker-link hook Job talk to the API server
        component = doc["metadata"]["labels"]["app.kubernetes.io/component"]
        needs_token = component in {"controller", "worker-link"}
        assert spec.get("automountServiceAccountToken", True) is needs_token, component
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in spec["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] and not ctx["allowPrivilegeEscalation"]
            assert ctx["capabilities"]["drop"] == ["ALL"]
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
            if doc["kind"] != "Pod":
                assert container["resources"]["requests"], doc["metadata"]["name"]


def test_the_controller_role_grants_exactly_what_the_controller_uses(helm: str) -> None:
    docs = documents(helm, "mode=pull")
    (role,) = [r for r in by_kind(docs, "Role") if r["metadata"]["name"] == "faas-controller"]
    granted = {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    assert granted == set(REQUIRED_RULES)
    assert not by_kind(docs, "ClusterRole"), "namespace-scoped: no cluster-wide rights"


def test_the_api_key_secret_is_generated_once_and_kept(helm: str) -> None:
    docs = documents(helm, "apiKey.enabled=true")
    (secret,) = [s for s in by_kind(docs, "Secret") if s["metadata"]["name"] == "faas-api-key"]
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert "lookup" in (CHART / "templates/api-key-secret.yaml").read_text(), (
        "reuse the existing key on upgrade"
    )
    existing = documents(helm, "apiKey.enabled=true", "apiKey.existingSecret=mine")
    assert [s["metadata"]["name"] for s in by_kind(existing, "Secret")] == ["faas-redis"]
    assert env_of(existing, "gateway")["FAAS_API_KEY"]["secretKeyRef"]["name"] == "mine"


def test_the_tenants_keys_file_reaches_the_gateway_from_a_secret(helm: str) -> None:
    lines = [f"alice:{'a' * 64}", f"bob:{'b' * 64}:50"]
    docs = documents(helm, f"tenants.keys[0]={lines[0]}", f"tenants.keys[1]={lines[1]}",
                     "tenants.maxUnfinishedTasks=7")  # fmt: skip
    (secret,) = [s for s in by_kind(docs, "Secret") if s["metadata"]["name"] == "faas-tenants"]
    entries = parse_keys(secret["stringData"]["api-keys"])  # what the gateway will read
    assert [(e.tenant.name, e.tenant.max_unfinished) for e in entries] == [
        ("alice", None), ("bob", 50),
    ]  # fmt: skip
    env = env_of(docs, "gateway")
    assert env["FAAS_API_KEYS_FILE"] == "/etc/faas/tenants/api-keys"
    assert env["FAAS_MAX_UNFINISHED_TASKS"] == "7"
    (gateway,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "faas-gateway"]
    spec = pod_spec(gateway)
    volume = next(v for v in spec["volumes"] if v["name"] == "tenants")
    assert volume["secret"]["secretName"] == "faas-tenants"
    (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "tenants"]
    assert mount == {"name": "tenants", "mountPath": "/etc/faas/tenants", "readOnly": True}
    assert gateway["spec"]["template"]["metadata"]["annotations"]["checksum/tenants"]
    for component in ("dispatcher", "worker"):  # only the gateway ever sees the file
        assert "FAAS_API_KEYS_FILE" not in env_of(docs, component)

    existing = documents(helm, "tenants.existingSecret=mine", f"tenants.keys[0]={lines[0]}")
    assert not [s for s in by_kind(existing, "Secret") if "tenants" in s["metadata"]["name"]]
    (gateway,) = [
        d for d in by_kind(existing, "Deployment") if d["metadata"]["name"] == "faas-gateway"
    ]
    volume = next(v for v in pod_spec(gateway)["volumes"] if v["name"] == "tenants")
    assert volume["secret"]["secretName"] == "mine"

    without = documents(helm)
    assert "FAAS_API_KEYS_FILE" not in env_of(without, "gateway")


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["externalRedis.url=redis://x:6379/0"], "not both"),
        (["redis.enabled=false"], "needs externalRedis.url"),
        (["workerPool.minReplicas=5", "workerPool.maxReplicas=2"], "minReplicas"),
        (["worker.terminationGracePeriodSeconds=10"], "drainTimeoutSeconds"),
        (["apiKey.existingSecret=x"], "apiKey.enabled=false"),
        (["tenants.keys[0]=alice:not-a-hash"], "/tenants/keys/0"),
        (["tenants.keys[0]=alice:{}".format("A" * 64)], "/tenants/keys/0"),
        (["gateway.ingress.tls.enabled=true"], "secretName"),
        (["mode=sideways"], "mode"),
        (["gateway.replicaz=3"], "replicaz"),
        (["worker.extraEnvs[0].name=X"], "extraEnvs"),
        (["worker.extraEnv[0].name=X", "worker.extraEnv[0].value=1"], "string"),
        (["priorityClasses.core.value=0"], "must exceed"),
        (["redis.auth.existingSecret=x", "redis.auth.enabled=false"], "auth is off"),
        (["workerLink.existingSecret=x", "workerLink.enabled=false"], "workerLink.enabled=false"),
        (["workerLink.secretName=x"], "secretName"),
        (["workerLink.enabled=yes"], "boolean"),
        (["workerLink.existingSecret=Not_A_Name"], "existingSecret"),
    ],
)
def test_contradictory_or_unknown_values_fail_at_render(
    helm: str, sets: list[str], message: str
) -> None:
    done = render(helm, *sets, check=False)
    assert done.returncode != 0
    assert message in done.stderr


def test_the_chart_crds_are_the_manifests_crds() -> None:
    done = subprocess.run([str(ROOT / "hack" / "verify-crds.sh")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_checks_catch_a_broken_chart(helm: str, tmp_path: Path) -> None:
    # Given a chart whose worker Deployment selects the wrong component
    broken = copy_chart(tmp_path)
    template = broken / "templates" / "worker-deployment.yaml"
    text = template.read_text()
    template.write_text(
        text.replace(
            '(dict "ctx" $ "component" "worker") | nindent 6',
            '(dict "ctx" $ "component" "wrong") | nindent 6',
            1,
        )
    )
    # And a dispatcher Service pointing at a port the container lacks
    dispatcher = broken / "templates" / "dispatcher-deployment.yaml"
    dispatcher.write_text(dispatcher.read_text().replace("targetPort: zmq", "targetPort: zmq-typo"))
    # And a FAAS_REDIS_URL that expands a variable its container no longer defines
    helpers = broken / "templates" / "_helpers.tpl"
    text = helpers.read_text()
    assert "- name: REDIS_PASSWORD\n" in text
    helpers.write_text(text.replace("- name: REDIS_PASSWORD\n", "- name: REDIS_PASSWORD_TYPO\n", 1))
    docs = documents(helm, "mode=pull", chart=broken)
    # Then the checks report all three
    assert any("faas-worker" in p for p in selector_problems(docs))
    assert any("zmq-typo" in p for p in service_problems(docs))
    assert any("$(REDIS_PASSWORD)" in p for p in expansion_problems(docs))
