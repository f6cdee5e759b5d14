"""A benchmark's side process: one system under test, driven line by line.

The parent writes one JSON command per line (`{"cmd": "w1", "n": 1000}`) and reads one
JSON answer per line; the side's own chatter goes to stderr (a log file). Each system
lives in a process of its own so that its client (Ray's driver threads, Celery's
connections) never shares a process, or a GIL, with the client measuring another one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

READY = "ready"


def serve(handlers: dict[str, Callable[..., Any]], ready: dict[str, Any] | None = None) -> None:
    """The side's loop: answer commands until stdin closes."""
    out = sys.stdout
    sys.stdout = sys.stderr  # prints of libraries must not corrupt the answers
    out.write(json.dumps({READY: True, **(ready or {})}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        name = request.pop("cmd")
        try:
            answer = {"ok": handlers[name](**request)}
        except Exception as exc:  # the parent reports it and stops everything
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()


class Side:
    """The parent's handle on one side process."""

    def __init__(
        self, name: str, argv: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                argv, cwd=cwd, env={**os.environ, **(env or {})}, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True,
            )  # fmt: skip
        self.info = self._read()

    def _read(self) -> dict[str, Any]:
        # Blocks until the side answers or exits; each side bounds its own waits.
        assert self.proc.stdout is not None
        while line := self.proc.stdout.readline():
            if line.startswith("{"):
                return json.loads(line)
            with open(self.log, "a") as log:  # printed before serve() took stdout over
                log.write(line)
        self.close()
        tail = self.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{self.name} side ended (log {self.log}):\n{tail}")

    def call(self, cmd: str, **kwargs: Any) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kwargs}) + "\n")
        self.proc.stdin.flush()
        answer = self._read()
        if "error" in answer:
            raise RuntimeError(f"{self.name}: {cmd}: {answer['error']}")
        return answer["ok"]

    def close(self, timeout_s: float = 60) -> None:
        """Closing stdin tells the side to stop what it started, then exit."""
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                assert pipe is not None
                pipe.close()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # its group: only what it started
            self.proc.wait()
