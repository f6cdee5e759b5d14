"""Ports for what a benchmark starts: any free one, or only from a range (`--ports LO-HI`)
when the machine is shared and each user keeps to a range of its own."""

from __future__ import annotations

import socket

from faas.platform import free_port


def parse_range(text: str) -> range:
    """'19200-19299' -> range(19200, 19300)."""
    low, sep, high = text.partition("-")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit():
        raise ValueError(f"a port range is LOW-HIGH, not {text!r}")
    first, last = int(low), int(high)
    if not 1024 <= first <= last <= 65535:
        raise ValueError(f"bad port range {text!r}")
    return range(first, last + 1)


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Ports:
    def __init__(self, allowed: range | None = None) -> None:
        self.allowed = allowed
        self._next = allowed.start if allowed else 0

    def take(self) -> int:
        if self.allowed is None:
            return free_port()
        return self.take_block(1).start

    def take_block(self, count: int) -> range:
        """`count` consecutive ports free now, never handed out before by this object."""
        if self.allowed is None:
            raise ValueError("a block of ports needs a range (--ports)")
        while self._next + count <= self.allowed.stop:
            block = range(self._next, self._next + count)
            taken = next((p for p in block if not _free(p)), None)
            if taken is None:
                self._next = block.stop
                return block
            self._next = taken + 1
        raise RuntimeError(f"no {count} free ports left in {self.allowed.start}-"
                           f"{self.allowed.stop - 1}")  # fmt: skip
