"""Create the Kubernetes Secret holding the worker link's CURVE keys, once.

The Helm chart runs this in a pre-install/pre-upgrade hook Job, because a template
cannot compute an X25519 public key:

    python -m common.curve_secret NAMESPACE NAME [LABEL=VALUE ...]

If Secret NAME exists it is left as it is (keys survive upgrades; to rotate them,
delete it and upgrade); otherwise it is created with a fresh dispatcher key pair
and a fresh worker key pair (the pool shares one), under the keys in `KEYS`. Two
runs racing to create it are fine: the loser gets 409 and stops.

Only the standard library talks to the API server: in a pod, the service-account
token and CA under /var/run/secrets/kubernetes.io/serviceaccount and the address in
KUBERNETES_SERVICE_HOST/PORT. Tests point it elsewhere with FAAS_KUBERNETES_API
(a base URL, http or https), FAAS_KUBERNETES_TOKEN_FILE and FAAS_KUBERNETES_CA_FILE.
"""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from common.curve import KeyPair

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
KEYS = ("dispatcher-secret-key", "dispatcher-public-key", "worker-secret-key", "worker-public-key")
TIMEOUT_S = 10.0
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")  # RFC 1123 subdomain
_LABEL = re.compile(
    r"^([A-Za-z0-9.-]{1,253}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?=.{0,63}$"
)


class Failure(Exception):
    """Something that ends the run with a one-line message and exit code 1."""


def new_keys() -> dict[str, str]:
    dispatcher, worker = KeyPair.generate(), KeyPair.generate()
    return {
        "dispatcher-secret-key": dispatcher.secret,
        "dispatcher-public-key": dispatcher.public,
        "worker-secret-key": worker.secret,
        "worker-public-key": worker.public,
    }


def secret_manifest(
    namespace: str, name: str, keys: dict[str, str], labels: dict[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in keys.items()},
    }


def check_existing(secret: dict[str, Any]) -> None:
    """An existing Secret must hold four keys whose public halves match the secret
    ones; otherwise the pods would fail later and less clearly."""
    data = secret.get("data") or {}
    missing = [k for k in KEYS if k not in data]
    if missing:
        raise Failure(f"the Secret exists but lacks {', '.join(missing)}: delete it to regenerate")
    try:
        text = {k: base64.b64decode(data[k]).decode() for k in KEYS}
        for role in ("dispatcher", "worker"):
            if KeyPair.from_secret(text[f"{role}-secret-key"]).public != text[f"{role}-public-key"]:
                raise Failure(f"the Secret's {role}-public-key does not match {role}-secret-key")
    except (ValueError, UnicodeDecodeError) as exc:  # zmq raises ValueError on a bad key
        raise Failure(f"the Secret holds an invalid key ({exc}): delete it to regenerate") from exc


class Api:
    """Just enough of a Kubernetes API client: one JSON request at a time."""

    def __init__(self, base: str, token: str, context: ssl.SSLContext | None) -> None:
        self.base = base.rstrip("/")
        self.token = token
        self.context = context

    @classmethod
    def from_environment(cls) -> Api:
        base = os.environ.get("FAAS_KUBERNETES_API")
        if not base:
            host = os.environ.get("KUBERNETES_SERVICE_HOST")
            port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            if not host:
                raise Failure(
                    "not in a pod (KUBERNETES_SERVICE_HOST is unset) and no FAAS_KUBERNETES_API"
                )
            base = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        token_file = Path(os.environ.get("FAAS_KUBERNETES_TOKEN_FILE", SERVICE_ACCOUNT / "token"))
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise Failure(
                f"cannot read the service-account token {token_file}: {exc.strerror}"
            ) from exc
        context = None
        if base.startswith("https:"):
            ca_file = os.environ.get("FAAS_KUBERNETES_CA_FILE", str(SERVICE_ACCOUNT / "ca.crt"))
            try:
                context = ssl.create_default_context(cafile=ca_file)
            except OSError as exc:
                raise Failure(f"cannot read the API server's CA {ca_file}: {exc.strerror}") from exc
        return cls(base, token, context)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        """(status, parsed JSON body); HTTP errors are returned, not raised."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S, context=self.context) as resp:
                return resp.status, _json(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json(exc.read())
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Failure(f"cannot reach the API server at {self.base}: {reason}") from exc


def _json(raw: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _problem(verb: str, status: int, body: dict[str, Any]) -> Failure:
    message = body.get("message") or body.get("reason") or "no detail"
    return Failure(f"{verb} the Secret: HTTP {status}: {message}")


def ensure_secret(api: Api, namespace: str, name: str, labels: dict[str, str]) -> str:
    """Create the Secret unless it exists; say which happened."""
    path = f"/api/v1/namespaces/{urllib.parse.quote(namespace)}/secrets"
    status, body = api.request("GET", f"{path}/{urllib.parse.quote(name)}")
    if status == 200:
        check_existing(body)
        return f"Secret {namespace}/{name} exists: its keys are kept"
    if status != 404:
        raise _problem("reading", status, body)
    status, body = api.request("POST", path, secret_manifest(namespace, name, new_keys(), labels))
    if status in (200, 201):
        return f"Secret {namespace}/{name} created with new CURVE keys"
    if status == 409:
        return f"Secret {namespace}/{name} was created concurrently: its keys are kept"
    raise _problem("creating", status, body)


def main(argv: list[str]) -> int:
    usage = "usage: python -m common.curve_secret NAMESPACE NAME [LABEL=VALUE ...]"
    if len(argv) < 2 or argv[0] in ("-h", "--help"):
        print(usage, file=sys.stderr)
        return 2
    namespace, name, *label_args = argv
    bad = [a for a in (namespace, name) if not _NAME.match(a)] + [
        a for a in label_args if not _LABEL.match(a)
    ]
    if bad:
        print(
            f"curve_secret: error: not a valid name or label: {bad[0]!r}\n{usage}", file=sys.stderr
        )
        return 2
    labels = dict(a.split("=", 1) for a in label_args)
    try:
        print(ensure_secret(Api.from_environment(), namespace, name, labels))
    except Failure as exc:
        print(f"curve_secret: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
