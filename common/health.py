"""A minimal HTTP health endpoint (`/healthz`, `/readyz`) for the processes that
serve no HTTP of their own, so Kubernetes probes can ask them. It runs in a daemon
thread and only calls the two checks it was given: cheap reads of timestamps and
flags the process keeps up to date."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

logger = logging.getLogger(__name__)


class HealthServer:
    def __init__(self, port: int, *, live: Callable[[], bool], ready: Callable[[], bool]) -> None:
        checks = {"/healthz": live, "/readyz": ready}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                check = checks.get(self.path)
                if check is None:
                    self.send_error(404)
                    return
                ok = check()
                body = b"ok\n" if ok else b"unavailable\n"
                self.send_response(200 if ok else 503)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # probes every few seconds would drown the logs

        self._server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]

    def start(self) -> HealthServer:
        threading.Thread(target=self._server.serve_forever, name="health", daemon=True).start()
        logger.info("health endpoint on :%d (/healthz, /readyz)", self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
