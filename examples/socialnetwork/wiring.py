"""How services reach each other: three ways to wire the same `services`.

local   direct Python calls in one process (`LocalApp`); deployed on the platform,
        each entry point is then one task that runs the whole call tree: the floor.
http    each service a registered function; a service calls another with
        POST /v1/tasks?wait= on the gateway from inside its slot (how DeathStarFaaS
        does it). The caller holds its slot while it waits, so the platform needs
        more slots than concurrent callers or the calls queue behind their parents.
nested  each service a registered function that calls others through captured
        RemoteFunctions, which inside a slot travel over the worker's link.
inline  as nested, with the captured functions marked `inline=True`: a call runs in
        the caller's slot as a plain call (no task), once the slot has its code.

`deploy` registers every service leaves first (see services.CALLEES), so that each
registration captures the functions it calls.
"""

from __future__ import annotations

import http.client
import json
import sys
import types
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from examples.socialnetwork.services import CALLEES, SERVICES
from examples.socialnetwork.store import Store, open_store
from faas.client import Client, RemoteFunction, dumps, loads

Variant = Literal["local", "http", "nested", "inline"]
VARIANTS: tuple[Variant, ...] = ("local", "http", "nested", "inline")
ENTRY_POINTS = ("register_user", "follow", "unfollow", "compose_post",
                "read_user_timeline", "read_home_timeline")  # fmt: skip
_WAIT_S = 60  # the gateway's longest long-poll


class Done:
    """A call that already ran (local wiring runs spawned calls at once)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        return self.value


class LocalApp:
    def __init__(self, store: Store) -> None:
        self.store = store

    def call(self, service: str, *args: Any) -> Any:
        return SERVICES[service](self, *args)

    def spawn(self, service: str, *args: Any) -> Done:
        return Done(self.call(service, *args))


@dataclass
class HttpLink:
    """Calls other services through the gateway's HTTP API, concurrently on threads."""

    gateway: str
    api_key: str | None
    ids: dict[str, str]
    deadline_s: float = 30.0
    """Of each call: when the callers hold every slot their calls wait for, the
    deadline ends the wait instead of the default's 5 minutes."""
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pool": None}

    def spawn(self, service: str, args: tuple[Any, ...]) -> Future[Any]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=8)
        return self._pool.submit(self.invoke, service, args)

    def invoke(self, service: str, args: tuple[Any, ...]) -> Any:
        url = urlsplit(self.gateway)
        conn = http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=_WAIT_S + 10)
        headers = {"content-type": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        try:
            body = {
                "function_id": self.ids[service],
                "payload": dumps((args, {})),
                "deadline_s": self.deadline_s,
            }
            view = _json(conn, "POST", f"/v1/tasks?wait={_WAIT_S}", headers, json.dumps(body))
            while view["status"] not in ("COMPLETED", "FAILED"):
                view = _json(conn, "GET", f"/v1/tasks/{view['task_id']}?wait={_WAIT_S}", headers)
        finally:
            conn.close()
        value = loads(view["result"]) if view.get("result") else None
        if view["status"] == "FAILED":
            if isinstance(value, BaseException):
                raise value
            raise RuntimeError(f"{service} failed: {view.get('error_kind')}: {view.get('error')}")
        return value

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


def _json(conn: http.client.HTTPConnection, method: str, path: str,
          headers: dict[str, str], body: str | None = None) -> dict[str, Any]:  # fmt: skip
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    payload = response.read()
    if response.status >= 400:
        raise RuntimeError(f"gateway answered {response.status}: {payload[:200]!r}")
    return json.loads(payload)


@dataclass
class NestedLink:
    """Calls other services through captured RemoteFunctions (the in-slot API)."""

    functions: dict[str, RemoteFunction]
    inline: bool = False

    def spawn(self, service: str, args: tuple[Any, ...]) -> Any:
        if self.inline:  # an inline call runs now, in this slot
            return Done(self.functions[service](*args))
        return self.functions[service].submit(*args)

    def close(self) -> None:
        pass


class LinkedApp:
    def __init__(self, store: Store, link: HttpLink | NestedLink) -> None:
        self.store = store
        self.link = link

    def call(self, service: str, *args: Any) -> Any:
        return self.link.spawn(service, args).result()

    def spawn(self, service: str, *args: Any) -> Any:
        return self.link.spawn(service, args)


def service_function(
    service: str, store_url: str, link: HttpLink | NestedLink | None
) -> Callable[..., Any]:
    """The function registered for `service`: the app's store URL (Redis or
    PostgreSQL, see store.open_store) and the link to the services it calls travel in
    its closure (slots see no environment of ours)."""

    def run(*args: Any) -> Any:
        store = app_store(store_url)
        app = LocalApp(store) if link is None else LinkedApp(store, link)
        try:
            return SERVICES[service](app, *args)
        finally:
            if link is not None:
                link.close()

    run.__name__ = run.__qualname__ = service
    return run


_REGISTRY = "examples.socialnetwork.app_stores"


def app_store(url: str) -> Store:
    """One store (its connections) per app store URL for the life of the slot process,
    as a service keeps its database connections: a call opens no connection of its own.

    The stores are kept in sys.modules, not in a global here: each registered function
    ships this module by value, with a copy of its globals of its own, so a global
    would hold one store per function in each slot (measured: 31 PostgreSQL connections
    from 4 slots in the nested wiring, where the services are 17 functions)."""
    registry = sys.modules.get(_REGISTRY)
    if registry is None:
        registry = sys.modules[_REGISTRY] = types.ModuleType(_REGISTRY)
        registry.stores = {}
    stores: dict[str, Store] = registry.stores
    store = stores.get(url)
    if store is None:
        store = stores[url] = open_store(url)
    return store


def registration_order() -> list[str]:
    """Every service after the services it calls."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name not in order:
            for callee in CALLEES.get(name, ()):
                visit(callee)
            order.append(name)

    for name in SERVICES:
        visit(name)
    return order


def deploy(
    client: Client, variant: Variant, store_url: str, api_key: str | None = None
) -> dict[str, RemoteFunction]:
    """Register the app's services wired as `variant`, on the app store at `store_url`;
    the registered functions by service name (local: only the entry points, each
    running its whole call tree)."""
    functions: dict[str, RemoteFunction] = {}
    wanted = ENTRY_POINTS if variant == "local" else registration_order()
    for name in wanted:
        callees = CALLEES.get(name, ())
        link: HttpLink | NestedLink | None = None
        if variant == "http":
            link = HttpLink(client.url, api_key, {c: functions[c].id for c in callees})
        elif variant == "nested":
            link = NestedLink({c: functions[c] for c in callees})
        elif variant == "inline":
            link = NestedLink({c: functions[c].options(inline=True) for c in callees}, True)
        fn = service_function(name, store_url, link)
        functions[name] = client.register(fn, name=f"socialnet-{variant}-{name}")
    return functions


def nested_unavailable(client: Client) -> str | None:
    """Why a registered function cannot call another through a captured
    RemoteFunction on this platform, or None if it can (a quick probe)."""
    inner = client.register(_probe_inner, name="socialnet-probe-inner")

    def outer(x: int) -> int:
        return inner(x) + 1

    try:
        probe = client.register(outer, name="socialnet-probe-outer")
        value = probe.options(deadline_s=15, max_attempts=1)(20)
    except Exception as exc:
        return f"nested calls are unavailable here ({type(exc).__name__}: {exc})"[:300]
    return None if value == 41 else f"the nested-call probe answered {value!r}, not 41"


def _probe_inner(x: int) -> int:
    return 2 * x
