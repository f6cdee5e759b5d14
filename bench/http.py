"""Minimal keep-alive HTTP/1.1 JSON clients for the benchmarks.

A general client (httpx, requests) costs a few hundred microseconds per request
in Python, as much as the server work being measured; these do only what the
gateway's answers need (Content-Length bodies), so the figures speak of the server.
"""

from __future__ import annotations

import asyncio
import http.client
from typing import Any

import orjson


class SyncJSON:
    def __init__(self, host: str, port: int) -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=120)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = orjson.dumps(body) if body is not None else None
        headers = {"content-type": "application/json"} if data is not None else {}
        status, _, payload = self.raw(method, path, data, headers)
        return status, orjson.loads(payload) if payload else None

    def raw(
        self, method: str, path: str, data: bytes | None, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        """A request with a body of bytes: (status, lower-cased headers, body)."""
        try:
            self.conn.request(method, path, body=data, headers=headers)
        except (BrokenPipeError, ConnectionResetError):
            # The gateway closed the connection while it sat idle (keep-alive timeout,
            # 5 s) and the request was not sent: send it on a new one.
            self.conn.close()
            self.conn.request(method, path, body=data, headers=headers)
        response = self.conn.getresponse()
        payload = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, payload

    def close(self) -> None:
        self.conn.close()


class AsyncJSON:
    """One connection; use several for concurrency."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        data = orjson.dumps(body) if body is not None else b""
        head = (
            f"{method} {path} HTTP/1.1\r\nhost: {self.host}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n"
        )
        self.writer.write(head.encode() + data)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        payload = await self.reader.readexactly(length)
        return status, orjson.loads(payload) if payload else None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
