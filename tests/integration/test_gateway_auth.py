"""With an API key set, the gateway answers 401 from the headers alone: an
unauthenticated upload is never read (its memory stays flat), and the API docs are
behind the key too. The health checks stay open for probes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import userfuncs

from common.models import DispatchMode
from faas.platform import LocalPlatform
from tests.conftest import make_platform, serialize, wait_result

KEY = "s3cret-key"
BODY_BYTES = 60 * 2**20


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    tmp: Path = tmp_path_factory.mktemp("gateway-auth")
    with make_platform(tmp, DispatchMode.LOCAL, slots=1, env={"FAAS_API_KEY": KEY}) as running:
        yield running


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _post_unauthenticated(
    port: int,
    size: int,
    target: str = "/register_function",
    content_type: str = "application/json",
) -> bytes:
    """Announce and send a large body without a key; returns what the server said."""
    head = (
        f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    chunk = b"A" * 2**20
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        try:
            for _ in range(size // len(chunk)):
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed without reading: what we want
        answer = b""
        try:
            while part := sock.recv(65536):
                answer += part
        except ConnectionResetError:
            pass
    return answer


@pytest.mark.parametrize(
    ("target", "content_type"),
    [
        ("/register_function", "application/json"),
        ("/v1/tasks?function_id=00000000-0000-4000-8000-000000000000&wait=30",
         "application/octet-stream"),
    ],
    ids=["json", "binary"],
)  # fmt: skip
def test_unauthenticated_uploads_are_refused_before_the_body_is_read(
    platform: LocalPlatform, target: str, content_type: str
) -> None:
    assert platform.gateway is not None and platform.gateway.popen is not None
    pid = platform.gateway.popen.pid  # one server process: uvicorn runs in it
    port = platform.config.port
    _post_unauthenticated(
        port, 2**20, target, content_type
    )  # warm up whatever a first request allocates
    before = _rss_kib(pid)
    for _ in range(10):
        answer = _post_unauthenticated(port, BODY_BYTES, target, content_type)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert b"API key" in answer
    grown_mib = (_rss_kib(pid) - before) / 1024
    print(f"gateway RSS grew {grown_mib:.1f} MiB over 10 unauthenticated 60 MiB bodies")
    assert grown_mib < 20, f"RSS grew {grown_mib:.0f} MiB: the bodies were read"


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/v1/functions", "/status/x"])
def test_everything_but_health_needs_the_key(platform: LocalPlatform, path: str) -> None:
    with httpx.Client(base_url=platform.url, timeout=30) as http:
        assert http.get(path).status_code == 401
        assert http.get(path, headers={"authorization": "Bearer wrong"}).status_code == 401
        assert http.get(path, headers={"authorization": f"Bearer {KEY}"}).status_code != 401
        assert http.get(path, headers={"x-api-key": KEY}).status_code != 401
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200


def test_a_call_with_the_key_works(platform: LocalPlatform) -> None:
    headers = {"authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=platform.url, timeout=30, headers=headers) as http:
        fn = http.post(
            "/register_function", json={"name": "double", "payload": serialize(userfuncs.double)}
        )
        assert fn.status_code == 201, fn.text
        body = {"function_id": fn.json()["function_id"], "payload": serialize(((4,), {}))}
        task_id = http.post("/execute_function", json=body).json()["task_id"]
        assert wait_result(http, task_id)["status"] == "COMPLETED"
