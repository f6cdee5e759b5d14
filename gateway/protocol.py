"""uvicorn's httptools protocol with a deadline on a request's line and headers.

uvicorn bounds an idle keep-alive connection (`timeout_keep_alive`) but not a
connection that is silent from the start, nor one that sends half a request line
and stops (slowloris): each would hold a socket and its buffers forever. Here a
timer runs from the connection's start, and from each next request's first byte,
until its headers are complete; when it fires the client gets 408 and the
connection is closed. Bodies are not bounded this way (see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT_ENV = "FAAS_HEADER_TIMEOUT_S"
_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class HeaderTimeoutProtocol(HttpToolsProtocol):
    header_timeout_s = float(os.environ.get(HEADER_TIMEOUT_ENV, "10"))
    """Read from the environment: uvicorn builds this class by name in every server
    process (`python -m gateway` exports its settings there)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # never inside a response
            self.transport.write(_TIMED_OUT)
        self.transport.close()
