"""What user code can see from inside a slot."""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import userfuncs

from common.hardening import SLOT_ENV_NAMES, SLOT_ENV_PREFIXES, unreadable_by
from common.models import DispatchMode
from faas.platform import LocalPlatform
from tests.conftest import MODES, deserialize, execute, make_platform, register, wait_result
from worker.settings import _default_env_dir


def test_a_slot_environment_holds_no_platform_settings_or_secrets(http: httpx.Client) -> None:
    seen = deserialize(
        wait_result(http, execute(http, register(http, userfuncs.environment)))["result"]
    )
    leaked = sorted(name for name in seen if name.startswith(("FAAS_", "REDIS")))
    assert not leaked, f"slots see {leaked}"
    assert "PATH" in seen and "PYTHONPATH" in seen  # what functions legitimately need stays


def test_a_slot_finds_no_secret_in_the_environment_block_it_was_forked_with(
    http: httpx.Client,
) -> None:
    # The fork server's os.environ is scrubbed, but the block it was started with stays in
    # its memory and in every slot's: it must hold the allow-list alone (it held the
    # worker's CURVE key, and user code could then pose as a worker).
    names = _call(http, userfuncs.own_environ_block)
    allowed = [n for n in names if n in SLOT_ENV_NAMES or n.startswith(SLOT_ENV_PREFIXES)]
    assert names == allowed, f"a slot's environment block holds {sorted(set(names) - set(allowed))}"


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="slots change uid only under root")


@pytest.fixture(scope="module", params=MODES, ids=lambda m: f"{m.value}-mode")
def dropping(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalPlatform, httpx.Client]]:
    """A platform whose root workers run slots as nobody (the default outside tests)."""
    tmp = tmp_path_factory.mktemp(f"dropping-{request.param.value}")
    # Always: where Python is under /root (as here), the worker would keep slots root.
    env = {"FAAS_SLOT_UID": "65534", "FAAS_SLOT_UID_ALWAYS": "true"}
    with (
        make_platform(tmp, request.param, workers=1, slots=2, env=env) as platform,
        httpx.Client(base_url=platform.url, timeout=60) as http,
    ):
        yield platform, http


def _call(http: httpx.Client, fn: Any, *args: Any) -> Any:
    view = wait_result(http, execute(http, register(http, fn), *args))
    assert view["status"] == "COMPLETED", view
    return deserialize(view["result"])


def _uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


@needs_root
def test_a_slot_of_a_root_worker_runs_as_nobody_with_no_groups(
    dropping: tuple[LocalPlatform, httpx.Client],
) -> None:
    _, http = dropping
    me = _call(http, userfuncs.identity)
    assert me["uid"] == me["euid"] == 65534 and me["gid"] == 65534 and me["groups"] == [], me
    assert _uid_of(me["worker"]) == 0  # the worker itself stays root


def test_a_slot_cannot_read_the_environment_of_any_component(
    dropping: tuple[LocalPlatform, httpx.Client],
) -> None:
    platform, http = dropping
    me = _call(http, userfuncs.identity)
    components = [me["forkserver"], me["worker"], *(d.popen.pid for d in platform.dispatchers)]
    assert platform.gateway is not None
    components.append(platform.gateway.popen.pid)
    seen = _call(http, userfuncs.read_environ, components)
    assert set(seen.values()) == {"PermissionError"}, {p: str(v)[:80] for p, v in seen.items()}


@needs_root
def test_a_slot_can_read_but_not_write_the_workers_environments(
    dropping: tuple[LocalPlatform, httpx.Client],
) -> None:
    _, http = dropping
    root = _default_env_dir()  # where the platform's root workers keep environments
    assert _call(http, userfuncs.write_file, str(root / "planted")) == "PermissionError"
    assert not (root / "planted").exists()
    assert sorted(_call(http, os.listdir, str(root))) == sorted(os.listdir(root))  # readable


def test_slots_that_could_not_import_stay_the_workers_uid(tmp_path: Path) -> None:
    """Where nobody cannot read Python (installed under /root), dropping would break
    every import that was not preloaded: the worker keeps slots at its own uid and
    warns, so user code still imports. Where nobody can read it, slots drop."""
    with (
        make_platform(
            tmp_path, DispatchMode.LOCAL, slots=1, env={"FAAS_SLOT_UID": "65534"}
        ) as platform,
        httpx.Client(base_url=platform.url, timeout=60) as http,
    ):
        function_id = register(http, userfuncs.import_and_uid)
        view = wait_result(http, execute(http, function_id, "sqlite3"))
        assert view["status"] == "COMPLETED", view
        uid = deserialize(view["result"])
        readable = not unreadable_by(65534, 65534, [sysconfig.get_paths()["stdlib"]])
        assert uid == (65534 if readable and os.geteuid() == 0 else os.geteuid())
