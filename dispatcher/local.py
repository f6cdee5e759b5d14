"""Local mode's worker: a `python -m worker` child process linked to the dispatcher
by a socketpair (common.local_link). The same code as a remote worker, without
sharing the dispatcher's GIL (a worker thread inside the dispatcher cost about 1 ms
per task). It dies with the dispatcher (PR_SET_PDEATHSIG)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys

from common import local_link

# The dispatcher's credentials, which its worker (a peer of remote workers, and
# the parent of user code) must not inherit.
_DISPATCHER_ONLY = frozenset({"FAAS_REDIS_URL", "FAAS_DISPATCHER_SECRET_KEY", "FAAS_API_KEY"})


def _die_with_parent() -> None:
    """Runs in the child between fork and exec."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class LocalWorker:
    def __init__(self, *, slots: int, worker_id: str) -> None:
        self.worker_id = worker_id
        self._argv = [
            sys.executable, "-m", "worker", "--mode", "pull", "-n", str(slots),
            "--id", worker_id,
        ]  # fmt: skip
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> socket.socket:
        """Start it on a new link; the dispatcher's end of that link."""
        ours, theirs = local_link.pair()
        # Not the dispatcher's secrets; its ports would clash with the dispatcher's own.
        env = {k: v for k, v in os.environ.items() if k not in _DISPATCHER_ONLY}
        env.update(FAAS_HEALTH_PORT="0", FAAS_METRICS_PORT="0")
        argv = [*self._argv, f"fd://{theirs.fileno()}"]
        try:
            self._process = subprocess.Popen(
                argv, env=env, pass_fds=[theirs.fileno()], preexec_fn=_die_with_parent
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()  # the child has it now
        return ours

    def exit_code(self) -> int | None:
        """None while it runs."""
        return None if self._process is None else self._process.poll()

    async def stop(self, timeout_s: float = 5) -> None:
        """SIGTERM: it drains (running tasks finish, their results are acknowledged),
        says BYE and exits; killed if it takes longer than `timeout_s`."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
