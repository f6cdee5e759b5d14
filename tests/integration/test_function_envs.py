"""Functions with requirements and code bundles run on workers that lack them:
the worker installs each environment once (from a local wheelhouse here) and runs
the function in a slot with it on the path."""

from __future__ import annotations

import base64
import io
import pickle
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import cloudpickle
import httpx
import pytest

from common.models import DispatchMode
from tests.conftest import deserialize, execute, make_platform, wait_all
from tests.wheelhouse import make_bundle, make_wheel


def version_of_testpkg():
    import faas_envpkg

    return faas_envpkg.VERSION


def version_once_allowed(started: str, go: str):
    """Says it started, waits for `go` to exist, then imports faas_envpkg."""
    import os
    import time

    open(started, "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.01)
    import faas_envpkg

    return faas_envpkg.VERSION


def bundled_value():
    import envbundle

    return envbundle.VALUE


def _b64_zip(files: dict[str, bytes]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return base64.b64encode(buffer.getvalue()).decode()


def register(
    http: httpx.Client,
    fn,
    requirements: Sequence[str] = (),
    bundles: Sequence[bytes] = (),
) -> str:  # type: ignore[no-untyped-def]
    """Through /v1/functions, as the SDK does."""
    body = {
        "name": fn.__name__,
        "payload": base64.b64encode(cloudpickle.dumps(fn)).decode(),
        "requirements": list(requirements),
        "py_modules": [base64.b64encode(b).decode() for b in bundles],
    }
    response = http.post("/v1/functions", json=body)
    assert response.status_code == 201, response.text
    return response.json()["function_id"]


@pytest.fixture(scope="module")
def envs_platform(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("envs")
    wheels = tmp / "wheels"
    make_wheel(wheels, "faas_envpkg", "1.0")
    make_wheel(wheels, "faas_envpkg", "2.0")
    env = {
        "FAAS_ENV_DIR": str(tmp / "envs"),
        "FAAS_PIP_NO_INDEX": "true",
        "FAAS_PIP_FIND_LINKS": str(wheels),
    }
    with (
        make_platform(tmp, DispatchMode.PULL, workers=1, slots=4, env=env) as platform,
        httpx.Client(base_url=platform.url, timeout=60) as http,
    ):
        yield platform, http, tmp / "envs"


def test_a_requirement_the_worker_lacks_is_installed_once_for_concurrent_calls(
    envs_platform,  # type: ignore[no-untyped-def]
) -> None:
    _, http, envs = envs_platform
    fid = register(http, version_of_testpkg, ["faas_envpkg==1.0"])
    started = time.monotonic()
    views = wait_all(http, [execute(http, fid) for _ in range(4)], timeout_s=120)
    cold_s = time.monotonic() - started
    assert {deserialize(v["result"]) for v in views.values()} == {"1.0"}
    print(f"cold: 4 first calls ended {cold_s:.2f} s after submission")
    assert len(list(envs.glob("*/*/faas_envpkg-1.0.dist-info"))) == 1


def test_conflicting_versions_run_side_by_side(envs_platform) -> None:  # type: ignore[no-untyped-def]
    _, http, _ = envs_platform
    one = register(http, version_of_testpkg, ["faas_envpkg==1.0"])
    two = register(http, version_of_testpkg, ["faas_envpkg==2.0"])
    tasks = {execute(http, fid): want for fid, want in [(one, "1.0"), (two, "2.0")] * 4}
    views = wait_all(http, list(tasks), timeout_s=120)
    assert {t: deserialize(v["result"]) for t, v in views.items()} == tasks


def test_a_bundle_is_importable(envs_platform) -> None:  # type: ignore[no-untyped-def]
    _, http, _ = envs_platform
    data = make_bundle({"envbundle/__init__.py": "VALUE = 7\n"})
    fid = register(http, bundled_value, bundles=[data])
    views = wait_all(http, [execute(http, fid)], timeout_s=60)
    assert [deserialize(v["result"]) for v in views.values()] == [7]


def test_a_requirement_that_cannot_be_installed_fails_as_a_dependency(envs_platform) -> None:  # type: ignore[no-untyped-def]
    _, http, _ = envs_platform
    fid = register(http, version_of_testpkg, ["faas_nosuchpkg==1.0"])
    task_id = execute(http, fid)
    wait_all(http, [task_id], timeout_s=120)
    view = http.get(f"/v1/tasks/{task_id}").json()
    assert view["status"] == "FAILED" and view["error_kind"] == "dependency"
    assert "faas_nosuchpkg" in view["error"]


def test_a_function_without_requirements_is_unaffected(envs_platform) -> None:  # type: ignore[no-untyped-def]
    _, http, _ = envs_platform
    fid = register(http, len)
    views = wait_all(http, [execute(http, fid, [1, 2, 3])], timeout_s=30)
    assert [deserialize(v["result"]) for v in views.values()] == [3]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("requirements", ["--index-url=http://elsewhere"], "pip options are not allowed"),
        ("requirements", ["six\nnumpy"], "line break"),
        ("py_modules", ["bm90IGEgemlw"], "not a zip file"),
        ("py_modules", ["%%%"], "not valid base64"),
        ("py_modules", [_b64_zip({"zeros.bin": bytes(8 * 2**20)})], "likely zip bomb"),
        ("py_modules", [_b64_zip({f"m{i}.py": b"" for i in range(20_001)})], "over the limit"),
    ],
)
def test_bad_requirements_and_bundles_are_refused_at_registration(
    envs_platform,
    field: str,
    value: list[str],
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    _, http, _ = envs_platform
    body = {"name": "f", "payload": base64.b64encode(cloudpickle.dumps(len)).decode(), field: value}
    response = http.post("/v1/functions", json=body)
    assert response.status_code == 400 and message in response.json()["detail"], response.text


def test_registration_warns_about_modules_the_workers_lack(envs_platform) -> None:  # type: ignore[no-untyped-def]
    _, http, _ = envs_platform
    # A pickle of a function by reference to a module nobody has installed
    by_reference = b"\x80\x04\x8c\x0emy_private_lib\x94\x8c\x01f\x94\x93\x94."
    body = {"name": "f", "payload": base64.b64encode(by_reference).decode()}
    warnings = http.post("/v1/functions", json=body).json()["warnings"]
    assert len(warnings) == 1 and "'my_private_lib'" in warnings[0]
    # Shipped with the function, or installed (json, httpx), it is not worth a warning
    body["requirements"] = ["my-private-lib==1.0"]
    assert http.post("/v1/functions", json=body).json()["warnings"] == []
    body = {"name": "g", "payload": base64.b64encode(cloudpickle.dumps(httpx.get)).decode()}
    assert http.post("/v1/functions", json=body).json()["warnings"] == []


def test_sources_for_tracebacks_are_capped(envs_platform) -> None:  # type: ignore[no-untyped-def]
    _, http, _ = envs_platform
    payload = base64.b64encode(cloudpickle.dumps(len)).decode()
    half = {"file": "a.py", "line": 1, "text": "x" * (128 * 1024 + 1)}
    body = {"name": "f", "payload": payload, "sources": [half, {**half, "file": "b.py"}]}
    response = http.post("/v1/functions", json=body)
    assert response.status_code == 422 and "over the limit of 262144" in response.text
    body["sources"] = [{**half, "text": "def f(): pass\n"}]
    assert http.post("/v1/functions", json=body).status_code == 201


def test_a_pickle_with_a_wrong_frame_length_is_a_400(envs_platform) -> None:  # type: ignore[no-untyped-def]
    _, http, _ = envs_platform
    data = bytearray(pickle.dumps(["x" * 40], protocol=5))
    data[3:11] = (len(data)).to_bytes(8, "little")  # declares more than follows
    body = {"name": "f", "payload": base64.b64encode(bytes(data)).decode()}
    response = http.post("/register_function", json=body)
    assert response.status_code == 400 and "FRAME" in response.json()["detail"], response.text


def _wait_for(path: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def test_eviction_spares_an_env_in_use_and_an_evicted_env_installs_again(
    tmp_path: Path,
) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "faas_envpkg", "1.0")
    make_wheel(wheels, "faas_envpkg", "2.0")
    envs = tmp_path / "envs"
    env = {
        "FAAS_ENV_DIR": str(envs),
        "FAAS_PIP_NO_INDEX": "true",
        "FAAS_PIP_FIND_LINKS": str(wheels),
        "FAAS_ENV_CACHE_MAX_BYTES": "1",  # room for nothing but the newest
    }
    started, go = tmp_path / "started", tmp_path / "go"

    def installed(version: str) -> int:
        return len(list(envs.glob(f"*/*/faas_envpkg-{version}.dist-info")))

    with (
        make_platform(tmp_path, DispatchMode.PULL, workers=1, slots=2, env=env) as platform,
        httpx.Client(base_url=platform.url, timeout=60) as http,
    ):
        one = register(http, version_once_allowed, ["faas_envpkg==1.0"])
        running = execute(http, one, str(started), str(go))
        _wait_for(started)  # a task runs in environment 1.0 and has not imported it yet
        two = register(http, version_of_testpkg, ["faas_envpkg==2.0"])
        views = wait_all(http, [execute(http, two)], timeout_s=120)
        assert [deserialize(v["result"]) for v in views.values()] == ["2.0"]
        assert installed("1.0") == 1  # in use: spared by the eviction after 2.0's install
        go.touch()
        views = wait_all(http, [running], timeout_s=60)
        assert [deserialize(v["result"]) for v in views.values()] == ["1.0"]
        three = register(http, bundled_value, bundles=[make_bundle({"envbundle.py": "VALUE = 7"})])
        views = wait_all(http, [execute(http, three)], timeout_s=120)
        assert [deserialize(v["result"]) for v in views.values()] == [7]
        assert installed("1.0") == installed("2.0") == 0  # no longer in use: evicted
        views = wait_all(http, [execute(http, one, str(started), str(go))], timeout_s=120)
        assert [deserialize(v["result"]) for v in views.values()] == ["1.0"]
        assert installed("1.0") == 1  # installed again before the task ran
