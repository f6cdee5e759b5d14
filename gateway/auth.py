"""The API-key check, as ASGI middleware: it answers 401 from the headers alone,
before any of the body is read, so unauthenticated uploads cost nothing. A key
names its tenant, which the middleware puts in the scope (`TENANT_SCOPE_KEY`) for
the routes. Everything but the health checks, /metrics (aggregates only) and the dashboard's
static page and assets needs a key, the API docs included."""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from common.tenants import DEFAULT_TENANT, KeyEntry, Tenant, find_tenant, key_digest, load_keys
from gateway.settings import GatewaySettings

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/"})  # metrics: aggregates only
PUBLIC_PREFIXES = ("/ui/",)
"""The dashboard's page and static assets: they hold no data (see `gateway.ui`)."""
TENANT_SCOPE_KEY = "faas.tenant"


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, *, keys: list[KeyEntry]) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in OPEN_PATHS or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        tenant = self._tenant(scope)
        if tenant is not None:
            scope[TENANT_SCOPE_KEY] = tenant
            await self.app(scope, receive, send)
            return
        body = orjson.dumps({"detail": "missing or wrong API key"})
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b"Bearer"),
                    # The body was not read: the connection cannot be reused.
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _tenant(self, scope: Scope) -> Tenant | None:
        given = b""
        for name, value in scope["headers"]:
            if name == b"x-api-key" and not given:
                given = value
            elif name == b"authorization" and value[:7].lower() == b"bearer ":
                given = value[7:]
        return find_tenant(self.keys, given) if given else None


def api_keys(settings: GatewaySettings) -> list[KeyEntry]:
    """The accepted keys: `api_key` (the default tenant's) and the keys file's lines.
    Empty: no key is needed, and every caller is the default tenant."""
    keys = []
    if settings.api_key is not None:
        digest = key_digest(settings.api_key.get_secret_value())
        keys.append(KeyEntry(Tenant(DEFAULT_TENANT), digest))
    if settings.api_keys_file is not None:
        keys += load_keys(settings.api_keys_file)
        if not keys:  # an empty file must not silently open the gateway to everyone
            raise ValueError(f"{settings.api_keys_file} holds no keys")
    return keys
