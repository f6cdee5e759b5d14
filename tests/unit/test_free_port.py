from __future__ import annotations

import socket
from pathlib import Path

from faas.platform import free_port


def test_a_free_port_is_bindable_and_below_the_ephemeral_range() -> None:
    """The ephemeral range is where outgoing connections take their source ports: a port
    from it may be gone before the server meant for it binds."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(50):
        port = free_port()
        assert 1024 <= port < low
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
