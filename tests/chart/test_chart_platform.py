"""What the chart must guarantee on a real cluster, checked on the rendered
manifests: core pods outrank workers and fit a small node; Redis requires a
password only the components that talk to it get; the NetworkPolicies admit
exactly the traffic the platform needs; user code reaches the pods that run it;
nothing can make `helm uninstall` wait on a WorkerPool finalizer."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import kopf
import pytest
import redis

from common.store import ADMIN_USER, COMPONENTS, redis_acl_lines
from controller.handlers import build_registry
from controller.settings import ControllerSettings
from tests.chart.checks import (
    by_kind,
    containers_of,
    env_of,
    ingress_allowed,
    pod_labels,
    pod_spec,
)
from tests.chart.conftest import CHART, ROOT, documents

CORE = ("gateway", "dispatcher", "controller", "redis")


def workload(docs: list[dict], component: str) -> dict:
    (doc,) = [
        d
        for d in docs
        if d["kind"] in {"Deployment", "StatefulSet"}
        and pod_labels(d)["app.kubernetes.io/component"] == component
    ]
    return doc


def cpu_millis(quantity: str | int) -> int:
    text = str(quantity)
    return int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)


# -- 1. priorities and a footprint that fits a small node ------------------------------


def test_core_pods_outrank_workers_and_workers_preempt_nobody(helm: str) -> None:
    docs = documents(helm, "mode=pull")
    classes = {c["metadata"]["name"]: c for c in by_kind(docs, "PriorityClass")}
    # Cluster-scoped: named after the namespace and the release, never global default
    assert set(classes) == {"faas-faas-core", "faas-faas-worker"}
    assert not any(c["globalDefault"] for c in classes.values())
    core, worker = classes["faas-faas-core"], classes["faas-faas-worker"]
    assert core["value"] > worker["value"]
    assert core["preemptionPolicy"] == "PreemptLowerPriority"
    assert worker["preemptionPolicy"] == "Never"
    for component in CORE:
        assert pod_spec(workload(docs, component))["priorityClassName"] == "faas-faas-core"
    assert pod_spec(workload(docs, "worker"))["priorityClassName"] == "faas-faas-worker"


def test_priority_class_names_differ_per_namespace_and_release(helm: str) -> None:
    def names(release: str, namespace: str) -> set[str]:
        text = subprocess.run(
            [helm, "template", release, str(CHART), "--namespace", namespace],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout  # fmt: skip
        return set(re.findall(r"kind: PriorityClass\nmetadata:\n  name: (\S+)", text))

    assert len(names("faas", "faas")) == 2
    assert names("faas", "faas").isdisjoint(names("faas", "other"))
    assert names("faas", "faas").isdisjoint(names("mine", "faas"))


def test_existing_priority_classes_are_named_not_created(helm: str) -> None:
    docs = documents(
        helm, "priorityClasses.create=false",
        "priorityClasses.core.name=platform-high", "priorityClasses.worker.name=batch-low",
    )  # fmt: skip
    assert not by_kind(docs, "PriorityClass")
    assert pod_spec(workload(docs, "redis"))["priorityClassName"] == "platform-high"
    assert pod_spec(workload(docs, "worker"))["priorityClassName"] == "batch-low"
    none = documents(helm, "priorityClasses.create=false")
    assert not any("priorityClassName" in pod_spec(workload(none, c)) for c in CORE)


def test_the_default_footprint_fits_a_two_cpu_node(helm: str) -> None:
    """Core pods plus maxReplicas workers request at most 1 CPU: half a 2-CPU node,
    leaving the rest to kube-system and the ingress controller."""
    docs = documents(helm, "mode=pull")
    (pool,) = by_kind(docs, "WorkerPool")
    requests = {
        c: sum(
            cpu_millis(x["resources"]["requests"]["cpu"])
            * (workload(docs, c)["spec"].get("replicas") or 1)
            for x in containers_of(docs, c)
        )
        for c in (*CORE, "worker")
    }
    workers = pool["spec"]["maxReplicas"] * requests["worker"]
    core = sum(requests[c] for c in CORE)
    assert workers + core <= 1000, f"core {core}m + {workers}m of workers"


# -- 3. helm uninstall never waits for the controller ----------------------------------


def test_nothing_puts_a_finalizer_on_workerpools(helm: str) -> None:
    docs = documents(helm, "mode=pull")
    (pool,) = by_kind(docs, "WorkerPool")
    assert not pool["metadata"].get("finalizers")
    # Kopf adds its finalizer for timers, daemons and mandatory on-delete handlers:
    # the controller registers none of them (it scales in its own loop).
    registry = build_registry(ControllerSettings())
    assert not list(registry._spawning.get_all_handlers())  # timers and daemons
    for handler in registry._changing.get_all_handlers():
        assert not handler.requires_finalizer, handler
    assert isinstance(registry, kopf.OperatorRegistry)


# -- 7. Redis password and NetworkPolicies ----------------------------------------------


def _redis_secret(docs: list[dict]) -> dict[str, str]:
    (secret,) = [s for s in by_kind(docs, "Secret") if s["metadata"]["name"] == "faas-redis"]
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_redis_has_a_user_per_component_from_an_acl_file_kept_across_upgrades(
    helm: str,
) -> None:
    docs = documents(helm, "mode=pull", "keyPrefix=acme")
    data = _redis_secret(docs)
    assert set(data) == {*COMPONENTS, ADMIN_USER, "users.acl"}
    assert "lookup" in (CHART / "templates/redis-secret.yaml").read_text()  # generated once
    passwords = {user: data[user] for user in (*COMPONENTS, ADMIN_USER)}
    # The chart renders the users that common/store.py declares, and no password.
    assert data["users.acl"].splitlines() == redis_acl_lines("acme", passwords)
    assert not [p for p in passwords.values() if p in data["users.acl"]]
    (redis,) = containers_of(docs, "redis")
    args = redis["args"]
    assert args[args.index("--protected-mode") + 1] == "yes"
    assert args[args.index("--aclfile") + 1] == "/etc/redis/users.acl"
    assert "--requirepass" not in args
    (acl,) = [v for v in pod_spec(workload(docs, "redis"))["volumes"] if v["name"] == "acl"]
    assert acl["secret"]["items"] == [{"key": "users.acl", "path": "users.acl"}]
    redis_env = {e["name"]: e.get("valueFrom") for e in redis["env"]}
    assert redis_env == {"REDISCLI_AUTH": {"secretKeyRef": {"name": "faas-redis", "key": "admin"}}}
    assert redis["readinessProbe"]["exec"]["command"] == ["redis-cli", "--user", "admin", "ping"]


@pytest.mark.parametrize("mode", ["pull", "local"])
def test_each_component_gets_only_its_own_redis_password_and_workers_none(
    helm: str, mode: str
) -> None:
    docs = documents(helm, f"mode={mode}")
    for component in COMPONENTS:
        env = env_of(docs, component)
        ref = {"name": "faas-redis", "key": component}
        assert env["REDIS_PASSWORD"]["secretKeyRef"] == ref
        assert env["FAAS_REDIS_URL"].startswith(f"redis://{component}:$(REDIS_PASSWORD)@faas-")
        # no other key of the Secret anywhere in the pod (env, envFrom, volumes)
        spec = str(pod_spec(workload(docs, component)))
        assert spec.count("'faas-redis'") == 1, f"{component}: {spec}"
    for worker in containers_of(docs, "worker"):
        assert "'faas-redis'" not in str(worker), "workers never get a Redis password"
        assert not [e for e in worker["env"] if "REDIS" in e["name"]]


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")
def test_the_charts_acl_file_loads_and_holds_each_user_to_its_commands(helm: str) -> None:
    data = _redis_secret(documents(helm, "mode=pull"))
    # A unix socket's path is at most 107 bytes: pytest's tmp_path for this long test
    # name can be longer.
    tmp_path = Path(tempfile.mkdtemp(prefix="acl-"))
    (tmp_path / "users.acl").write_text(data["users.acl"])
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(tmp_path / "r.sock"),
         "--aclfile", str(tmp_path / "users.acl"), "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def login(user: str | None) -> redis.Redis:
            password = data[user] if user else None
            return redis.Redis(unix_socket_path=str(tmp_path / "r.sock"), username=user,
                               password=password, retry_on_error=[ConnectionError])  # fmt: skip

        deadline = time.monotonic() + 10
        while not (tmp_path / "r.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # polled with a deadline: the socket is the only sign
        assert login("gateway").set("faas:idem:default:k", "v")
        with pytest.raises(redis.exceptions.NoPermissionError):
            login("gateway").flushall()
        with pytest.raises(redis.exceptions.AuthenticationError):
            login(None).ping()
        assert login(ADMIN_USER).config_get("aclfile")
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_an_existing_redis_secret_is_used_and_external_redis_needs_none(helm: str) -> None:
    docs = documents(helm, "redis.auth.existingSecret=mine")
    assert not [s for s in by_kind(docs, "Secret") if "redis" in s["metadata"]["name"]]
    for component in COMPONENTS:
        ref = env_of(docs, component)["REDIS_PASSWORD"]["secretKeyRef"]
        assert ref == {"name": "mine", "key": component}
    (acl,) = [v for v in pod_spec(workload(docs, "redis"))["volumes"] if v["name"] == "acl"]
    assert acl["secret"]["secretName"] == "mine"
    external = documents(
        helm, "redis.enabled=false", "externalRedis.url=rediss://:pw@redis.example:6380/0"
    )
    assert "REDIS_PASSWORD" not in env_of(external, "gateway")
    assert env_of(external, "gateway")["FAAS_REDIS_URL"] == "rediss://:pw@redis.example:6380/0"
    off = documents(helm, "redis.auth.enabled=false")
    (redis_container,) = containers_of(off, "redis")
    assert "--aclfile" not in redis_container["args"]
    assert env_of(off, "gateway")["FAAS_REDIS_URL"].startswith("redis://faas-redis-0.")


def labels(component: str, release: str = "faas") -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "faas",
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/component": component,
    }


@pytest.mark.parametrize("mode", ["pull", "push", "local"])
def test_network_policies_admit_exactly_the_platform_traffic(helm: str, mode: str) -> None:
    docs = documents(helm, f"mode={mode}")
    redis, dispatcher, gateway = labels("redis"), labels("dispatcher"), labels("gateway")
    for client in ("gateway", "dispatcher", "controller"):
        assert ingress_allowed(docs, source=labels(client), target=redis, port="redis")
    stranger = {"app": "something-else"}
    for source in (labels("worker"), labels("gateway", release="other"), stranger):
        assert not ingress_allowed(docs, source=source, target=redis, port="redis"), source
    ingress_ns = {"kubernetes.io/metadata.name": "ingress-nginx"}
    assert not ingress_allowed(
        docs, source={}, target=redis, port="redis", source_namespace=ingress_ns
    )
    # The dispatcher's ZeroMQ port: workers only (local mode: nobody)
    assert ingress_allowed(docs, source=labels("worker"), target=dispatcher, port="zmq") == (
        mode != "local"
    )
    for source in (labels("gateway"), stranger):
        assert not ingress_allowed(docs, source=source, target=dispatcher, port="zmq")
    # The gateway: any pod of the namespace, and the ingress controller's namespace
    assert ingress_allowed(docs, source=stranger, target=gateway, port="http")
    assert ingress_allowed(
        docs, source={"app": "ingress-nginx"}, target=gateway, port="http",
        source_namespace=ingress_ns,
    )  # fmt: skip
    assert not ingress_allowed(
        docs, source={}, target=gateway, port="http",
        source_namespace={"kubernetes.io/metadata.name": "elsewhere"},
    )  # fmt: skip
    # Workers and the controller serve nobody
    for closed in ("worker", "controller"):
        assert not ingress_allowed(docs, source=stranger, target=labels(closed), port="health")
    # Every named port a policy admits is a container port of the pods it selects
    for policy in by_kind(docs, "NetworkPolicy"):
        for rule in policy["spec"].get("ingress") or []:
            for port in rule.get("ports", []):
                targets = [
                    c
                    for d in docs
                    if d["kind"] in {"Deployment", "StatefulSet"}
                    and all(
                        pod_labels(d).get(k) == v
                        for k, v in policy["spec"]["podSelector"].get("matchLabels", {}).items()
                    )
                    for c in pod_spec(d)["containers"]
                ]
                names = {p.get("name") for c in targets for p in c.get("ports", [])}
                assert port["port"] in names, (policy["metadata"]["name"], port)


def test_the_ingress_selector_is_a_value_and_policies_can_be_off(helm: str) -> None:
    docs = documents(
        helm, "networkPolicy.ingressNamespaceSelector.kubernetes\\.io/metadata\\.name=traefik"
    )
    gateway = labels("gateway")
    traefik = {"kubernetes.io/metadata.name": "traefik"}
    assert ingress_allowed(docs, source={}, target=gateway, port="http", source_namespace=traefik)
    assert not by_kind(documents(helm, "networkPolicy.enabled=false"), "NetworkPolicy")


def test_the_policy_check_catches_an_open_redis(helm: str) -> None:
    docs = documents(helm, "mode=pull")
    for policy in by_kind(docs, "NetworkPolicy"):
        if policy["metadata"]["name"] == "faas-redis":
            policy["spec"]["ingress"][0]["from"][0]["podSelector"] = {}
    assert ingress_allowed(docs, source=labels("worker"), target=labels("redis"), port="redis")


# -- 4. user code -----------------------------------------------------------------------

EXTRAS = [
    "worker.extraEnv[0].name=COURSE_MODE",
    "worker.extraEnv[0].value=on",
    "worker.extraVolumes[0].name=models",
    "worker.extraVolumes[0].emptyDir.medium=Memory",
    "worker.extraVolumeMounts[0].name=models",
    "worker.extraVolumeMounts[0].mountPath=/models",
    "userCode.configMap=course-code",
    "userCode.package=tests",
]


def user_code_of(container: dict, spec: dict) -> tuple[dict, list, list]:
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    mounts = [m for m in container.get("volumeMounts", []) if m["name"] != "tmp"]
    volumes = [v for v in spec.get("volumes", []) if v["name"] != "tmp"]
    return env, mounts, volumes


@pytest.mark.parametrize("mode", ["pull", "local"])
def test_user_code_and_extras_reach_only_the_pods_that_run_functions(helm: str, mode: str) -> None:
    docs = documents(helm, f"mode={mode}", *EXTRAS)
    runs_code = "worker" if mode != "local" else "dispatcher"
    doc = workload(docs, runs_code)
    (container,) = pod_spec(doc)["containers"]
    env, mounts, volumes = user_code_of(container, pod_spec(doc))
    assert env["PYTHONPATH"] == "/opt/faas/user-code" and env["COURSE_MODE"] == "on"
    assert {"name": "user-code", "mountPath": "/opt/faas/user-code/tests", "readOnly": True} in (
        mounts
    )
    assert {"name": "models", "mountPath": "/models"} in mounts
    assert {"name": "user-code", "configMap": {"name": "course-code"}} in volumes
    assert {"name": "models", "emptyDir": {"medium": "Memory"}} in volumes
    others = [c for c in ("gateway", "controller", "redis", "dispatcher") if c != runs_code]
    for component in others:
        other = workload(docs, component)
        for c in pod_spec(other)["containers"]:
            env, mounts, volumes = user_code_of(c, pod_spec(other))
            assert "PYTHONPATH" not in env and "COURSE_MODE" not in env, component
            names = {m["name"] for m in mounts} | {v["name"] for v in volumes}
            assert not names & {"user-code", "models"}, component


def test_the_worker_image_override_applies_to_workers_only(helm: str) -> None:
    docs = documents(
        helm, "image.repository=registry.example/faas", "image.tag=1.2",
        "worker.image.repository=registry.example/faas-course", "worker.image.pullPolicy=Always",
    )  # fmt: skip
    (worker,) = containers_of(docs, "worker")
    assert (worker["image"], worker["imagePullPolicy"]) == (
        "registry.example/faas-course:1.2",
        "Always",
    )
    for component in ("gateway", "dispatcher", "controller"):
        (c,) = containers_of(docs, component)
        assert (c["image"], c["imagePullPolicy"]) == ("registry.example/faas:1.2", "IfNotPresent")
    (test_pod,) = by_kind(docs, "Pod")
    assert test_pod["spec"]["containers"][0]["image"] == "registry.example/faas:1.2"
    default = documents(helm, "image.repository=registry.example/faas", "image.tag=1.2")
    assert containers_of(default, "worker")[0]["image"] == "registry.example/faas:1.2"


# -- 6. small things ----------------------------------------------------------------------


def test_a_numeric_redis_tag_is_accepted(helm: str) -> None:
    docs = documents(helm, "redis.image.tag=7")
    assert containers_of(docs, "redis")[0]["image"] == "redis:7"


def test_redis_writes_every_command_to_disk_before_answering_unless_told_otherwise(
    helm: str,
) -> None:
    def fsync(*values: str) -> str:
        args = containers_of(documents(helm, *values), "redis")[0]["args"]
        return args[args.index("--appendfsync") + 1]

    assert fsync() == "always"  # no crash loses an accepted task
    assert fsync("redis.appendfsync=everysec") == "everysec"
    failed = subprocess.run([helm, "template", "x", str(CHART), "--set", "redis.appendfsync=no"],
                            capture_output=True, text=True)  # fmt: skip
    assert failed.returncode != 0 and "appendfsync" in failed.stderr


def test_the_readme_one_liner_sets_the_body_size_deploy_sh_sets() -> None:
    deploy = (ROOT / "hack/deploy.sh").read_text()
    readme = (ROOT / "README.md").read_text()
    (annotation,) = re.findall(r"proxy-body-size=(\w+)", deploy)
    assert f"proxy-body-size={annotation}" in readme
    assert "image.repository=" in readme and "docker push" in readme
    assert "crds/" in readme and "kubectl apply" in readme  # the CRD upgrade note


# -- the dispatcher restarts cleanly (another branch adds a recovery grace) ---------------


def test_the_dispatcher_restarts_one_at_a_time_and_is_reachable_while_recovering(
    helm: str,
) -> None:
    docs = documents(helm, "mode=pull")
    dispatcher = workload(docs, "dispatcher")
    assert dispatcher["spec"]["strategy"]["type"] == "Recreate"
    assert pod_spec(dispatcher)["terminationGracePeriodSeconds"] >= 10
    (service,) = [s for s in by_kind(docs, "Service") if s["metadata"]["name"] == "faas-dispatcher"]
    assert service["spec"]["publishNotReadyAddresses"] is True


def test_values_documented_in_values_yaml_exist_in_the_schema() -> None:
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())
    text = Path(CHART / "values.yaml").read_text()
    for path in re.findall(r"## @param (\S+)", text):
        node = schema
        for part in path.split("."):
            node = node["properties"][part]


@pytest.mark.parametrize("mode", ["local", "pull"])
def test_functions_environments_install_on_a_writable_volume_of_the_pods_that_run_code(
    helm: str, mode: str
) -> None:
    docs = documents(
        helm, f"mode={mode}", "environments.noIndex=true", "environments.findLinks=/wheels",
        "environments.cache.existingClaim=envs", "environments.cache.maxBytes=3000000000",
    )  # fmt: skip
    runs_code = "worker" if mode != "local" else "dispatcher"
    doc = workload(docs, runs_code)
    (container,) = pod_spec(doc)["containers"]
    env, mounts, volumes = user_code_of(container, pod_spec(doc))
    assert env["FAAS_ENV_DIR"].startswith("/var/cache/faas/")
    assert env["FAAS_PIP_NO_INDEX"] == "true" and env["FAAS_PIP_FIND_LINKS"] == "/wheels"
    assert env["FAAS_ENV_CACHE_MAX_BYTES"] == "3000000000"  # an integer, not 3e+09
    assert {"name": "environments", "mountPath": "/var/cache/faas"} in mounts
    assert {"name": "environments", "persistentVolumeClaim": {"claimName": "envs"}} in volumes
    others = [c for c in ("gateway", "controller", "redis", "dispatcher") if c != runs_code]
    for component in others:
        for c in pod_spec(workload(docs, component))["containers"]:
            assert "FAAS_ENV_DIR" not in user_code_of(c, pod_spec(workload(docs, component)))[0]


def test_the_environment_cache_is_an_empty_dir_by_default(helm: str) -> None:
    (volume,) = [
        v for v in pod_spec(workload(documents(helm, "mode=pull"), "worker"))["volumes"]
        if v["name"] == "environments"
    ]  # fmt: skip
    assert volume == {"name": "environments", "emptyDir": {"sizeLimit": "2Gi"}}
