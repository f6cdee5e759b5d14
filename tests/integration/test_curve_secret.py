"""`python -m common.curve_secret`, the chart's hook Job, as a real process against a
small real HTTP server emulating the Kubernetes API's Secret endpoints."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import zmq

from common.curve import KeyPair
from common.curve_secret import KEYS, secret_manifest

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token-123"
SECRETS = "/api/v1/namespaces/faas/secrets"


@dataclass
class FakeApi:
    """Answers GET with `get_status` (and the stored Secret on 200), POST with
    `post_status`; records every request."""

    get_status: int = 404
    post_status: int = 201
    stored: dict[str, Any] | None = None
    requests: list[tuple[str, str, str, Any]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: Any) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _record(self, body: Any = None) -> None:
            fake.requests.append(
                (self.command, self.path, self.headers.get("Authorization", ""), body)
            )

        def do_GET(self) -> None:
            self._record()
            if fake.get_status == 200:
                self._answer(200, fake.stored)
            else:
                self._answer(fake.get_status, {"kind": "Status", "message": "nope"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self._record(body)
            if fake.post_status == 201:
                fake.stored = body
                self._answer(201, body)
            else:
                self._answer(fake.post_status, {"kind": "Status", "message": "already exists"})

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def run(api: FakeApi, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "FAAS_KUBERNETES_API": api.url,
        "FAAS_KUBERNETES_TOKEN_FILE": str(token),
    }
    return subprocess.run(
        [sys.executable, "-m", "common.curve_secret", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
    )  # fmt: skip


def decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_a_missing_secret_is_created_with_two_valid_key_pairs(api: FakeApi, tmp_path: Path) -> None:
    done = run(api, tmp_path, "faas", "faas-worker-link", "app.kubernetes.io/instance=faas")
    assert done.returncode == 0, done.stderr
    assert "created" in done.stdout
    (get, post) = api.requests
    assert get[:3] == ("GET", f"{SECRETS}/faas-worker-link", f"Bearer {TOKEN}")
    assert post[:3] == ("POST", SECRETS, f"Bearer {TOKEN}")
    secret = post[3]
    assert secret["metadata"] == {
        "name": "faas-worker-link",
        "namespace": "faas",
        "labels": {"app.kubernetes.io/instance": "faas"},
    }
    keys = decoded(secret)
    assert set(keys) == set(KEYS)
    for role in ("dispatcher", "worker"):
        secret_key, public_key = keys[f"{role}-secret-key"], keys[f"{role}-public-key"]
        assert len(secret_key) == len(public_key) == 40
        assert zmq.curve_public(secret_key.encode()).decode() == public_key
    assert keys["dispatcher-secret-key"] != keys["worker-secret-key"]


def test_an_existing_secret_is_kept_and_nothing_is_posted(api: FakeApi, tmp_path: Path) -> None:
    d, w = KeyPair.generate(), KeyPair.generate()
    keys = {
        "dispatcher-secret-key": d.secret, "dispatcher-public-key": d.public,
        "worker-secret-key": w.secret, "worker-public-key": w.public,
    }  # fmt: skip
    api.get_status, api.stored = 200, secret_manifest("faas", "link", keys, {})
    done = run(api, tmp_path, "faas", "link")
    assert done.returncode == 0, done.stderr
    assert "kept" in done.stdout
    assert [r[0] for r in api.requests] == ["GET"]


def test_a_secret_created_concurrently_counts_as_success(api: FakeApi, tmp_path: Path) -> None:
    api.post_status = 409
    done = run(api, tmp_path, "faas", "link")
    assert done.returncode == 0, done.stderr
    assert "concurrently" in done.stdout
    assert [r[0] for r in api.requests] == ["GET", "POST"]


@pytest.mark.parametrize(
    ("get_status", "post_status", "message"),
    [(403, 201, "reading the Secret: HTTP 403: nope"), (404, 403, "creating the Secret: HTTP 403")],
)
def test_other_answers_fail_with_one_clear_line(
    api: FakeApi, tmp_path: Path, get_status: int, post_status: int, message: str
) -> None:
    api.get_status, api.post_status = get_status, post_status
    done = run(api, tmp_path, "faas", "link")
    assert done.returncode == 1
    assert done.stderr.startswith("curve_secret: error: ") and message in done.stderr
    assert done.stderr.count("\n") == 1, "one line, no traceback"


def test_an_existing_secret_with_broken_keys_is_reported_not_overwritten(
    api: FakeApi, tmp_path: Path
) -> None:
    d, w = KeyPair.generate(), KeyPair.generate()
    keys = {
        "dispatcher-secret-key": d.secret, "dispatcher-public-key": w.public,
        "worker-secret-key": w.secret, "worker-public-key": w.public,
    }  # fmt: skip
    api.get_status, api.stored = 200, secret_manifest("faas", "link", keys, {})
    done = run(api, tmp_path, "faas", "link")
    assert done.returncode == 1 and "dispatcher-public-key does not match" in done.stderr
    api.stored = secret_manifest("faas", "link", {"worker-secret-key": w.secret}, {})
    done = run(api, tmp_path, "faas", "link")
    assert done.returncode == 1 and "lacks dispatcher-secret-key" in done.stderr
    assert [r[0] for r in api.requests] == ["GET", "GET"]


def test_an_unreachable_api_or_missing_token_or_bad_name_fail_clearly(
    api: FakeApi, tmp_path: Path
) -> None:
    api.url = f"http://127.0.0.1:{unused_port()}"
    done = run(api, tmp_path, "faas", "link")
    assert done.returncode == 1 and "cannot reach the API server" in done.stderr
    assert done.stderr.count("\n") == 1
    done = subprocess.run(
        [sys.executable, "-m", "common.curve_secret", "faas", "link"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={"FAAS_KUBERNETES_API": api.url, "FAAS_KUBERNETES_TOKEN_FILE": str(tmp_path / "none")},
    )  # fmt: skip
    assert done.returncode == 1 and "cannot read the service-account token" in done.stderr
    done = run(api, tmp_path, "faas", "../secrets")
    assert done.returncode == 2 and "not a valid name" in done.stderr
    assert not api.requests


def unused_port() -> int:
    """A local port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
