"""uvicorn's httptools protocol with deadlines on slow clients (slowloris).

uvicorn bounds an idle keep-alive connection (`timeout_keep_alive`) but not a
connection that is silent from the start, one that sends half a request line and
stops, nor one that sends its headers and then its body a byte at a time: each
would hold a socket and its buffers forever. Here:

- a request's line and headers must arrive within `header_timeout_s`, counted from
  the connection's start (and from each next request's first byte); else the client
  gets 408 and the connection is closed;
- a request's body may not stall, with no byte arriving, for `body_idle_timeout_s`;
  else the connection is closed (the app sees a disconnect). While uvicorn itself
  has paused reading because the app has not consumed the body yet, the client is
  not the one stalling, so the timer starts again.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.settings import GatewaySettings

_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class TimedHttpProtocol(HttpToolsProtocol):
    # From the environment: uvicorn builds this class by name in every server process.
    _settings = GatewaySettings()
    header_timeout_s = _settings.header_timeout_s
    body_idle_timeout_s = _settings.body_idle_timeout_s

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._body_timer is not None:  # before parsing: the end of the body disarms it
            self._arm_body_timer()
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_timers()
        self._arm_body_timer()  # a request without a body completes in the same feed
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._cancel_timers()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _arm_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
        self._body_timer = self.loop.call_later(self.body_idle_timeout_s, self._body_stalled)

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # never inside a response
            self.transport.write(_TIMED_OUT)
        self.transport.close()

    def _body_stalled(self) -> None:
        self._body_timer = None
        if self.flow is not None and self.flow.read_paused:  # we stopped reading, not them
            self._arm_body_timer()
        elif not self.transport.is_closing():
            self.transport.close()
