"""The worker link's CURVE keys on Kubernetes: a pre-install/pre-upgrade hook Job
makes the Secret once, with the least rights that can; only the dispatcher and the
workers get the keys, each only its own half; existingSecret, local mode and a
plain link render no hook."""

from __future__ import annotations

from typing import Any

import pytest

from common.curve_secret import KEYS
from tests.chart.checks import by_kind, containers_of, env_of, pod_spec
from tests.chart.conftest import documents

HOOK_KINDS = {"ServiceAccount", "Role", "RoleBinding", "Job"}
LINK_ENV = {
    "FAAS_DISPATCHER_SECRET_KEY", "FAAS_WORKER_PUBLIC_KEYS",
    "FAAS_WORKER_SECRET_KEY", "FAAS_DISPATCHER_PUBLIC_KEY",
}  # fmt: skip


def hooks(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The worker-link hook objects by kind."""
    found = [
        d
        for d in docs
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "worker-link"
    ]
    assert len({d["kind"] for d in found}) == len(found), "one of each kind"
    return {d["kind"]: d for d in found}


def secret_ref(env: dict[str, Any], name: str) -> tuple[str, str]:
    ref = env[name]["secretKeyRef"]
    return ref["name"], ref["key"]


@pytest.mark.parametrize("mode", ["pull", "push"])
def test_a_hook_job_creates_the_secret_before_install_and_upgrade(helm: str, mode: str) -> None:
    docs = documents(helm, f"mode={mode}")
    found = hooks(docs)
    assert set(found) == HOOK_KINDS
    weights = {}
    for kind, doc in found.items():
        assert doc["metadata"]["name"] == "faas-worker-link"
        notes = doc["metadata"]["annotations"]
        assert notes["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert notes["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
        weights[kind] = int(notes["helm.sh/hook-weight"])
    # Helm creates hooks by ascending weight: the rights exist before the Job runs
    assert weights["ServiceAccount"] < weights["RoleBinding"] < weights["Job"]
    assert weights["Role"] < weights["RoleBinding"]
    # The Job runs the module in the platform image, on the hook's ServiceAccount
    job = found["Job"]
    spec = pod_spec(job)
    assert spec["serviceAccountName"] == "faas-worker-link"
    assert spec["automountServiceAccountToken"] is True
    assert spec["restartPolicy"] == "Never"
    assert "priorityClassName" not in spec, "the release's classes do not exist at pre-install"
    (container,) = spec["containers"]
    assert container["image"] == "faas:0.1.0"
    assert container["args"][:3] == ["common.curve_secret", "faas", "faas-worker-link"]
    assert "app.kubernetes.io/instance=faas" in container["args"]
    assert job["spec"]["backoffLimit"] >= 1 and job["spec"]["activeDeadlineSeconds"] > 0
    binding = found["RoleBinding"]
    assert binding["roleRef"]["name"] == found["Role"]["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "faas-worker-link", "namespace": "faas"}
    ]


def test_the_hook_may_only_read_its_secret_and_create_secrets(helm: str) -> None:
    role = hooks(documents(helm, "mode=pull"))["Role"]
    granted = {
        (g, r, v, tuple(rule.get("resourceNames", ())))
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    # create cannot be limited by resourceNames: Kubernetes ignores them for create
    assert granted == {
        ("", "secrets", "get", ("faas-worker-link",)),
        ("", "secrets", "create", ()),
    }


def test_only_the_dispatcher_and_workers_get_each_their_half_of_the_keys(helm: str) -> None:
    docs = documents(helm, "mode=pull")
    dispatcher, worker = env_of(docs, "dispatcher"), env_of(docs, "worker")
    assert secret_ref(dispatcher, "FAAS_DISPATCHER_SECRET_KEY") == (
        "faas-worker-link",
        "dispatcher-secret-key",
    )
    assert secret_ref(dispatcher, "FAAS_WORKER_PUBLIC_KEYS") == (
        "faas-worker-link",
        "worker-public-key",
    )
    assert secret_ref(worker, "FAAS_WORKER_SECRET_KEY") == ("faas-worker-link", "worker-secret-key")
    assert secret_ref(worker, "FAAS_DISPATCHER_PUBLIC_KEY") == (
        "faas-worker-link",
        "dispatcher-public-key",
    )
    assert not {"FAAS_WORKER_SECRET_KEY", "FAAS_DISPATCHER_PUBLIC_KEY"} & set(dispatcher)
    assert not {"FAAS_DISPATCHER_SECRET_KEY", "FAAS_WORKER_PUBLIC_KEYS"} & set(worker)
    referenced = {
        (e["valueFrom"]["secretKeyRef"]["key"])
        for c in [*containers_of(docs, "dispatcher"), *containers_of(docs, "worker")]
        for e in c["env"]
        if e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "faas-worker-link"
    }
    assert referenced <= set(KEYS), "the keys the pods read are the keys the module writes"
    # Nothing else mentions the Secret: not the gateway, controller, Redis or test pod
    for doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet", "Pod"} and doc["metadata"]["name"] not in {
            "faas-dispatcher",
            "faas-worker",
        }:
            assert "worker-link" not in str(doc), doc["metadata"]["name"]
            names = {e["name"] for c in pod_spec(doc)["containers"] for e in c.get("env") or []}
            assert not names & LINK_ENV, doc["metadata"]["name"]


def test_an_existing_secret_is_used_and_no_hook_runs(helm: str) -> None:
    docs = documents(helm, "mode=push", "workerLink.existingSecret=my-link")
    assert hooks(docs) == {}
    assert not by_kind(docs, "Job")
    dispatcher, worker = env_of(docs, "dispatcher"), env_of(docs, "worker")
    assert secret_ref(dispatcher, "FAAS_DISPATCHER_SECRET_KEY")[0] == "my-link"
    assert secret_ref(worker, "FAAS_WORKER_SECRET_KEY")[0] == "my-link"
    # The controller's is then the only Role
    assert [r["metadata"]["name"] for r in by_kind(docs, "Role")] == ["faas-controller"]


def test_local_mode_and_a_plain_link_need_no_keys(helm: str) -> None:
    # Local mode: the worker loop runs inside the dispatcher, with no link to protect
    local = documents(helm, "mode=local")
    assert hooks(local) == {}
    assert not set(env_of(local, "dispatcher")) & LINK_ENV
    plain = documents(helm, "mode=pull", "workerLink.enabled=false")
    assert hooks(plain) == {}
    for component in ("dispatcher", "worker"):
        assert not set(env_of(plain, component)) & LINK_ENV


def test_no_network_policy_blocks_the_hooks_way_to_the_api_server(helm: str) -> None:
    """The policies restrict ingress only; an Egress policy selecting the hook Job
    (or everything) would need a rule for the API server."""
    docs = documents(helm, "mode=pull")
    assert by_kind(docs, "NetworkPolicy")
    for policy in by_kind(docs, "NetworkPolicy"):
        assert policy["spec"]["policyTypes"] == ["Ingress"], policy["metadata"]["name"]
        assert "egress" not in policy["spec"]
