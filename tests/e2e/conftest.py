"""End-to-end tests against a platform deployed on Kubernetes (hack/deploy.sh),
reached through its ingress at FAAS_E2E_URL, with kubectl for chaos. Without
FAAS_E2E_URL every test that needs the cluster is skipped, saying how to run
them; test_harness.py (the harness checking itself) runs everywhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from faas import Client

URL = os.environ.get("FAAS_E2E_URL", "")
NAMESPACE = os.environ.get("FAAS_E2E_NAMESPACE", "faas")
RELEASE = os.environ.get("FAAS_E2E_RELEASE", "faas")
TOOLS = Path(__file__).resolve().parents[2] / ".tools" / "bin"
HOW = "FAAS_E2E_URL is not set: run hack/kind-up.sh, hack/image.sh, hack/deploy.sh MODE, then hack/e2e.sh"
NO_CLUSTER_NEEDED = {"test_harness.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if URL:
        return
    for item in items:
        path = Path(str(item.fspath))
        if path.parent.name == "e2e" and path.name not in NO_CLUSTER_NEEDED:
            item.add_marker(pytest.mark.skip(reason=HOW))


@pytest.fixture(scope="session")
def client() -> Iterator[Client]:
    with Client(URL, timeout_s=60) as c:
        yield c


def kubectl_binary() -> str:
    return shutil.which("kubectl") or str(TOOLS / "kubectl")


def kubectl(*args: str, check: bool = True, stdin: str | None = None) -> str:
    done = subprocess.run(
        [kubectl_binary(), "--namespace", NAMESPACE, *args],
        input=stdin, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr}")
    return done.stdout


def pods(component: str) -> list[dict[str, Any]]:
    selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}"
    return json.loads(kubectl("get", "pods", "-l", selector, "-o", "json"))["items"]


def mode_of(dispatcher: dict[str, Any]) -> str:
    """The dispatch mode of a release, from its dispatcher Deployment: the value of
    FAAS_MODE, found by name (its position changes with the values)."""
    (container,) = [
        c for c in dispatcher["spec"]["template"]["spec"]["containers"] if c["name"] == "dispatcher"
    ]
    (value,) = [e["value"] for e in container.get("env", []) if e["name"] == "FAAS_MODE"]
    return value


def mode() -> str:
    return mode_of(json.loads(kubectl("get", "deployment", f"{RELEASE}-dispatcher", "-o", "json")))


def replicas(deployment: str) -> int:
    return int(
        json.loads(kubectl("get", "deployment", deployment, "-o", "json"))["spec"].get(
            "replicas", 0
        )
    )


def eventually(predicate: Callable[[], bool], timeout_s: float, every_s: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return False
