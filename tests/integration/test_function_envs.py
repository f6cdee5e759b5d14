"""Functions with requirements and code bundles run on workers that lack them:
the worker installs each environment once (from a local wheelhouse here) and runs
the function in a slot with it on the path."""

from __future__ import annotations

import asyncio
import hashlib
import time

import cloudpickle
import httpx
import pytest

from common.models import DispatchMode, FunctionEnv, new_id
from common.store import Store
from faas.platform import LocalPlatform
from tests.conftest import deserialize, execute, make_platform, wait_all
from tests.wheelhouse import make_bundle, make_wheel


def version_of_testpkg():
    import faas_envpkg

    return faas_envpkg.VERSION


def bundled_value():
    import envbundle

    return envbundle.VALUE


def register(platform: LocalPlatform, fn, env: FunctionEnv, bundles: dict[str, bytes] = {}) -> str:  # type: ignore[no-untyped-def]  # noqa: B006
    """Through the store, as the gateway's /v1 registration does."""

    async def go() -> str:
        store = Store.from_url(platform.redis_url, prefix=platform.config.key_prefix)
        try:
            for digest, data in bundles.items():
                await store.put_bundle(digest, data)
            function_id = new_id()
            await store.register_function(function_id, fn.__name__, cloudpickle.dumps(fn), env)
            return function_id
        finally:
            await store.close()

    return asyncio.run(go())


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
    platform, http, envs = envs_platform
    fid = register(platform, version_of_testpkg, FunctionEnv(("faas_envpkg==1.0",)))
    started = time.monotonic()
    views = wait_all(http, [execute(http, fid) for _ in range(4)], timeout_s=120)
    cold_s = time.monotonic() - started
    assert {deserialize(v["result"]) for v in views.values()} == {"1.0"}
    print(f"cold: 4 first calls ended {cold_s:.2f} s after submission")
    assert len(list(envs.glob("*/*/faas_envpkg-1.0.dist-info"))) == 1


def test_conflicting_versions_run_side_by_side(envs_platform) -> None:  # type: ignore[no-untyped-def]
    platform, http, _ = envs_platform
    one = register(platform, version_of_testpkg, FunctionEnv(("faas_envpkg==1.0",)))
    two = register(platform, version_of_testpkg, FunctionEnv(("faas_envpkg==2.0",)))
    tasks = {execute(http, fid): want for fid, want in [(one, "1.0"), (two, "2.0")] * 4}
    views = wait_all(http, list(tasks), timeout_s=120)
    assert {t: deserialize(v["result"]) for t, v in views.items()} == tasks


def test_a_bundle_is_importable(envs_platform) -> None:  # type: ignore[no-untyped-def]
    platform, http, _ = envs_platform
    data = make_bundle({"envbundle/__init__.py": "VALUE = 7\n"})
    digest = hashlib.sha256(data).hexdigest()
    fid = register(platform, bundled_value, FunctionEnv((), (digest,)), {digest: data})
    views = wait_all(http, [execute(http, fid)], timeout_s=60)
    assert [deserialize(v["result"]) for v in views.values()] == [7]


def test_a_requirement_that_cannot_be_installed_fails_as_a_dependency(envs_platform) -> None:  # type: ignore[no-untyped-def]
    platform, http, _ = envs_platform
    fid = register(platform, version_of_testpkg, FunctionEnv(("faas_nosuchpkg==1.0",)))
    task_id = execute(http, fid)
    wait_all(http, [task_id], timeout_s=120)
    view = http.get(f"/v1/tasks/{task_id}").json()
    assert view["status"] == "FAILED" and view["error_kind"] == "dependency"
    assert "faas_nosuchpkg" in view["error"]


def test_a_function_without_requirements_is_unaffected(envs_platform) -> None:  # type: ignore[no-untyped-def]
    platform, http, _ = envs_platform
    fid = register(platform, len, FunctionEnv())
    views = wait_all(http, [execute(http, fid, [1, 2, 3])], timeout_s=30)
    assert [deserialize(v["result"]) for v in views.values()] == [3]
