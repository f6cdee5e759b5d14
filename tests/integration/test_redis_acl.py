"""The embedded Redis of `faas up` admits only its users, each to what it needs."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis import exceptions as redis_errors

from common.models import DispatchMode
from common.store import ADMIN_USER, COMPONENTS
from faas.platform import LocalPlatform, PlatformConfig
from tests.conftest import make_platform

# A command refused by the ACL: NOPERM, or inside a script the error Lua raises.
DENIED = r"(?i)no permissions|can't run|can't access"


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    platform = LocalPlatform(PlatformConfig(data_dir=tmp_path_factory.mktemp("acl")))
    platform.start_redis()
    try:
        yield platform
    finally:
        platform.stop()


def passwords(platform: LocalPlatform) -> dict[str, str]:
    return json.loads((platform.config.data_dir / "redis-passwords.json").read_text())


def client(platform: LocalPlatform, user: str | None = None) -> redis.Redis:
    password = passwords(platform)[user] if user else None
    return redis.Redis(port=platform.redis_port, username=user, password=password)


def test_the_passwords_are_private_and_there_is_one_per_component(
    embedded: LocalPlatform,
) -> None:
    path = embedded.config.data_dir / "redis-passwords.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((embedded.config.data_dir / "redis-users.acl").stat().st_mode) == 0o600
    assert set(passwords(embedded)) == {*COMPONENTS, ADMIN_USER}
    assert len(set(passwords(embedded).values())) == len(COMPONENTS) + 1
    assert redis.Redis(
        port=embedded.redis_port, username="default", password=passwords(embedded)[ADMIN_USER]
    ).ping()
    assert (
        passwords(embedded)[ADMIN_USER]
        not in (embedded.config.data_dir / "redis-users.acl").read_text()
    )


def test_a_client_without_credentials_is_refused(embedded: LocalPlatform) -> None:
    with pytest.raises(redis_errors.AuthenticationError, match="Authentication required"):
        client(embedded).ping()


def test_the_default_user_is_refused_without_the_admins_password(
    embedded: LocalPlatform,
) -> None:
    for password in ("", "nopass", passwords(embedded)["gateway"]):
        with pytest.raises(redis_errors.AuthenticationError):
            redis.Redis(port=embedded.redis_port, username="default", password=password).ping()


def test_a_wrong_password_is_refused(embedded: LocalPlatform) -> None:
    with pytest.raises(redis_errors.AuthenticationError):
        redis.Redis(port=embedded.redis_port, username="gateway", password="guess").ping()


@pytest.mark.parametrize("user", COMPONENTS)
def test_a_component_may_not_administer_redis_nor_touch_other_keys(
    embedded: LocalPlatform, user: str
) -> None:
    c = client(embedded, user)
    assert c.ping()
    refused = [
        lambda: c.config_get("*"), c.flushall, lambda: c.keys("*"), c.shutdown,
        lambda: c.acl_list(), lambda: c.set("elsewhere:key", 1), lambda: c.get("other"),
        lambda: c.eval("return redis.call('FLUSHALL')", 0),
        lambda: c.eval("return redis.call('SET', KEYS[1], 1)", 1, "elsewhere:key"),
    ]  # fmt: skip
    for command in refused:
        with pytest.raises(redis_errors.ResponseError, match=DENIED):
            command()


def test_each_component_is_held_to_its_own_keys(embedded: LocalPlatform) -> None:
    gateway, dispatcher, controller = (client(embedded, u) for u in COMPONENTS)
    gateway.hset("faas:task:t1", "status", "QUEUED")  # its own keys work
    refused = [
        lambda: gateway.get("faas:lease"),  # the dispatcher's lease
        lambda: gateway.rpush("faas:lost-workers", "w 1"),  # the controller's reports
        lambda: controller.hgetall("faas:task:t1"),  # results are not the controller's
        lambda: controller.get("faas:bundle:x"),
        lambda: dispatcher.zadd("faas:functions:default", {"f": 1}),  # the gateway registers
        lambda: dispatcher.rpush("faas:name:default:f", "x"),
        lambda: controller.get("faas:status"),
    ]
    for command in refused:
        with pytest.raises(redis_errors.ResponseError, match=DENIED):
            command()


def test_the_passwords_are_kept_across_restarts(tmp_path: Path) -> None:
    config = PlatformConfig(data_dir=tmp_path / "data")
    first = LocalPlatform(config)
    first.start_redis()
    first.stop()
    second = LocalPlatform(config)
    second.start_redis()
    try:
        assert second.redis_url == first.redis_url.replace(
            str(first.redis_port), str(second.redis_port)
        )
        assert redis.Redis.from_url(second.redis_url).ping()
    finally:
        second.stop()


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.parametrize("mode", [DispatchMode.LOCAL, DispatchMode.PULL])
def test_only_the_components_get_a_redis_url_each_its_own_user(
    tmp_path: Path, mode: DispatchMode
) -> None:
    with make_platform(tmp_path, mode, workers=1, slots=1) as platform:
        assert platform.gateway is not None and platform.dispatcher is not None
        urls = {
            name: _environ(proc.popen.pid).get("FAAS_REDIS_URL", "")
            for name, proc in (("gateway", platform.gateway), ("dispatcher", platform.dispatcher))
        }
        for name, url in urls.items():
            assert url.startswith(f"redis://{name}:"), name
        workers = [w.popen.pid for w in platform.workers] or _children(
            platform.dispatcher.popen.pid
        )
        assert workers
        for pid in workers:
            env = _environ(pid)
            assert not [k for k in env if "REDIS" in k or k == "FAAS_DISPATCHER_SECRET_KEY"], env
