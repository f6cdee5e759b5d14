"""Fixtures shared by the suites. Integration tests run the real platform (real
redis-server, real processes, real sockets) through `faas.platform`."""

from __future__ import annotations

import codecs
import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dill
import httpx
import pytest

from common.models import DispatchMode
from faas.platform import LocalPlatform, PlatformConfig, free_port

INTEGRATION_DIR = Path(__file__).parent / "integration"
MODES = [DispatchMode.LOCAL, DispatchMode.PULL, DispatchMode.PUSH]

# Short timers so failure-detection tests finish quickly.
# Most tests' functions write into pytest's root-only temp directories, and this
# machine's Python may live under /root: as root, their slots stay root unless a test
# asks for the drop (FAAS_SLOT_UID), as tests/integration/test_slot_isolation.py does.
# Children (make_platform's and `faas up`'s) inherit this.
os.environ.setdefault("FAAS_SLOT_UID", "0")

FAST_TIMERS = {
    "FAAS_LEASE_TTL_S": "1.5",
    "FAAS_HEARTBEAT_INTERVAL_S": "0.2",
    "FAAS_LIVENESS_TIMEOUT_S": "1.0",
    "FAAS_DEADLINE_GRACE_S": "1.0",
    "FAAS_RECOVERY_GRACE_S": "3.0",
    # A platform stopped with tasks still running waits this long for them (25 s by
    # default); tests that check draining set their own.
    "FAAS_DRAIN_TIMEOUT_S": "3",
}


def serialize(obj: Any) -> str:
    """The course helper: base64 text of a dill pickle, with its line breaks."""
    return codecs.encode(dill.dumps(obj), "base64").decode()


def deserialize(text: str) -> Any:
    return dill.loads(codecs.decode(text.encode(), "base64"))


def make_platform(
    tmp: Path, mode: DispatchMode = DispatchMode.LOCAL, **overrides: Any
) -> LocalPlatform:
    env = {"PYTHONPATH": str(INTEGRATION_DIR), **FAST_TIMERS, **overrides.pop("env", {})}
    config = PlatformConfig(
        mode=mode,
        port=free_port(),
        data_dir=tmp / "data",
        log_dir=tmp / "logs",
        env=env,
        **{"workers": 2, "slots": 4, **overrides},
    )
    return LocalPlatform(config)


@pytest.fixture(scope="session", autouse=True)
def _temp_dirs_reachable_by_slots(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Under root, slots run as nobody: let them traverse pytest's private temp
    directories (0700; under xdist one level deeper) to reach the environments
    tests install there."""
    if os.geteuid() == 0:
        base = tmp_path_factory.getbasetemp()
        top = Path(tempfile.gettempdir()).resolve()
        for path in [base, *base.parents]:
            if top not in path.parents:  # only pytest's own directories
                break
            path.chmod(path.stat().st_mode | 0o011)


@pytest.fixture(scope="session", params=MODES, ids=lambda m: f"{m.value}-mode")
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalPlatform]:
    tmp = tmp_path_factory.mktemp(f"platform-{request.param.value}")
    with make_platform(tmp, request.param) as running:
        yield running


@pytest.fixture(scope="module")
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalPlatform]:
    """A local-mode platform of the test module's own, for gateway tests that need
    neither the three modes nor a shared platform."""
    tmp = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    with make_platform(tmp, DispatchMode.LOCAL, slots=2) as platform:
        yield platform


@pytest.fixture(scope="session")
def http(platform: LocalPlatform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.url, timeout=60) as client:
        yield client


def register(http: httpx.Client, fn: Callable[..., Any], name: str | None = None) -> str:
    response = http.post(
        "/register_function", json={"name": name or fn.__name__, "payload": serialize(fn)}
    )
    assert response.status_code == 201, response.text
    return response.json()["function_id"]


def execute(http: httpx.Client, function_id: str, *args: Any, **kwargs: Any) -> str:
    body = {"function_id": function_id, "payload": serialize((args, kwargs))}
    response = http.post("/execute_function", json=body)
    assert response.status_code == 201, response.text
    return response.json()["task_id"]


def wait_result(http: httpx.Client, task_id: str, timeout_s: float = 30) -> dict[str, Any]:
    """Long-poll until the task ends; fails the test if it does not within timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        wait = min(10.0, max(deadline - time.monotonic(), 0.1))
        body = http.get(f"/result/{task_id}", params={"wait": wait}).json()
        if body["status"] in ("COMPLETED", "FAILED"):  # the course API: CANCELLED shows FAILED
            return body
    raise AssertionError(f"task {task_id} did not end within {timeout_s} s")


def wait_all(
    http: httpx.Client, task_ids: list[str], timeout_s: float = 60
) -> dict[str, dict[str, Any]]:
    """Every task's final view, via the batch long-poll; fails if any is still open."""
    deadline = time.monotonic() + timeout_s
    views: dict[str, dict[str, Any]] = {}
    pending = list(task_ids)
    while pending and time.monotonic() < deadline:
        wait = min(10.0, max(deadline - time.monotonic(), 0.1))
        for chunk in (pending[i : i + 1000] for i in range(0, len(pending), 1000)):
            response = http.post("/v1/tasks/wait", json={"task_ids": chunk, "wait": wait})
            assert response.status_code == 200, response.text
            for view in response.json()["tasks"]:
                if view["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                    views[view["task_id"]] = view
        pending = [t for t in pending if t not in views]
    assert not pending, f"{len(pending)} tasks did not end within {timeout_s} s, e.g. {pending[:3]}"
    return views


def running_on(http: httpx.Client, task_id: str, timeout_s: float = 20) -> dict:
    """The task's view once it is RUNNING (polls, bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        view = http.get(f"/v1/tasks/{task_id}").json()
        if view["status"] == "RUNNING" and view["worker_id"]:
            return view
        time.sleep(0.02)
    raise AssertionError(f"task {task_id} never started")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    platform = LocalPlatform(PlatformConfig(data_dir=tmp_path_factory.mktemp("redis")))
    platform.start_redis()
    try:
        yield platform.redis_url
    finally:
        platform.stop()


@contextlib.contextmanager
def task_running(
    tmp: Path, mode: DispatchMode, seconds: float, **env: str
) -> Iterator[tuple[LocalPlatform, httpx.Client, dict[str, Any]]]:
    """Two one-slot workers, one of them running `nap(seconds)`: (platform, client,
    the running task's view, with its task_id and worker_id)."""
    import userfuncs  # tests/integration, on the path of the tests that use this

    with (
        make_platform(tmp, mode, workers=2, slots=1, env=env) as platform,
        httpx.Client(base_url=platform.url, timeout=60) as http,
    ):
        task_id = execute(http, register(http, userfuncs.nap), seconds)
        yield platform, http, running_on(http, task_id)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", help="run the long chaos variant")
    parser.addoption("--chaos-cycles", type=int, default=0, help="cycles of chaos phases")
    parser.addoption(
        "--chaos-phases",
        type=lambda text: text.split(","),
        default=None,
        help="comma-separated chaos phases (default: all)",
    )


@pytest.fixture
def soak(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--soak"))
