"""Slowloris: a connection that sends nothing, or half a request line, or half its
headers, is answered 408 and closed after the header timeout; a body that stalls is
dropped after the body idle timeout; an idle keep-alive connection is closed after
the keep-alive timeout; a slow but timely client is served."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from common.models import DispatchMode
from faas.platform import LocalPlatform
from tests.conftest import make_platform

HEADER_TIMEOUT_S = 1.0
BODY_IDLE_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    env = {
        "FAAS_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "FAAS_BODY_IDLE_TIMEOUT_S": str(BODY_IDLE_TIMEOUT_S),
        "FAAS_KEEP_ALIVE_TIMEOUT_S": "1",
    }
    tmp = tmp_path_factory.mktemp("gateway-slowloris")
    with make_platform(tmp, DispatchMode.LOCAL, slots=2, env=env) as platform:
        yield platform


def _seconds_until_closed(port: int, first_bytes: bytes) -> tuple[float, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10 * HEADER_TIMEOUT_S) as sock:
        started = time.monotonic()
        if first_bytes:
            sock.sendall(first_bytes)
        received = b""
        while chunk := sock.recv(4096):  # b"" once the server closed it; else times out
            received += chunk
        return time.monotonic() - started, received


@pytest.mark.parametrize(
    "first_bytes",
    [b"", b"GET /healthz HT", b"POST /execute_function HTTP/1.1\r\nHost: x\r\nContent-Le"],
    ids=["silent", "half-a-request-line", "half-the-headers"],
)
def test_a_half_sent_request_is_closed_after_the_header_timeout(
    gateway: LocalPlatform, first_bytes: bytes
) -> None:
    elapsed, received = _seconds_until_closed(gateway.config.port, first_bytes)
    assert HEADER_TIMEOUT_S * 0.9 <= elapsed < HEADER_TIMEOUT_S + 2, elapsed
    assert received.startswith(b"HTTP/1.1 408"), received


def test_a_stalled_body_is_dropped_after_the_body_idle_timeout(gateway: LocalPlatform) -> None:
    head = b"POST /register_function HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    request = head + b"Content-Length: 100\r\n\r\n" + b'{"name": "f", '
    elapsed, received = _seconds_until_closed(gateway.config.port, request)
    assert BODY_IDLE_TIMEOUT_S * 0.9 <= elapsed < BODY_IDLE_TIMEOUT_S + 2, elapsed
    assert received == b"", received  # nothing to answer: the request never arrived


def test_an_idle_keep_alive_connection_is_closed(gateway: LocalPlatform) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    elapsed, received = _seconds_until_closed(gateway.config.port, request)
    assert received.startswith(b"HTTP/1.1 200") and b"408" not in received
    assert elapsed < 1 + 2, elapsed  # FAAS_KEEP_ALIVE_TIMEOUT_S=1


def test_a_slow_but_steady_client_is_served(gateway: LocalPlatform) -> None:
    """The deadline is on the headers as a whole: a client under it is fine."""
    with socket.create_connection(("127.0.0.1", gateway.config.port), timeout=10) as sock:
        for part in (b"GET /healthz HT", b"TP/1.1\r\nHost: x\r\n", b"\r\n"):
            sock.sendall(part)
            time.sleep(HEADER_TIMEOUT_S / 5)  # pacing the client itself, not a sync point
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
