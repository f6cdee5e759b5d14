"""The app's own servers, never the platform's (user code must not reach the
platform's store): a redis-server (the default backend), or a throwaway PostgreSQL
and a memcached (the optional one), each on its own socket or port, data in memory
or in a temporary folder, stopped on exit.

PostgreSQL and memcached come from Debian's packages (`install-postgres.sh`);
`postgres_unavailable()` says why they cannot run here, for the callers to skip.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import redis

from faas.platform import Process, free_port, redis_server_binary

_UNPRIVILEGED = "nobody"  # postgres refuses to run as root, memcached wants a user named


@contextlib.contextmanager
def app_redis(data_dir: Path, port: int = 0) -> Iterator[str]:
    """Start a redis-server for the app's data (in memory: the example keeps no
    data across runs) and yield its URL; stopped on exit."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    argv = [
        redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
        "--save", "", "--appendonly", "no", "--daemonize", "no",
    ]  # fmt: skip
    server = Process("app-redis", argv, {}, data_dir).start()
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_until_answering(url, server, timeout_s=15)
        yield url
    finally:
        server.stop(timeout_s=5)


def _wait_until_answering(url: str, server: Process, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with redis.Redis.from_url(url, socket_connect_timeout=0.5) as db:
        while time.monotonic() < deadline:
            if not server.alive():
                raise RuntimeError(f"the app's redis-server exited ({server.returncode})")
            with contextlib.suppress(redis.ConnectionError):
                if db.ping():
                    return
            time.sleep(0.05)
    raise RuntimeError(f"the app's redis-server did not answer within {timeout_s} s")


# -- PostgreSQL and memcached -----------------------------------------------------------


def postgres_bin() -> Path | None:
    """The folder of initdb, postgres and pg_isready: initdb's on PATH (resolved, as
    a link on PATH may come without its siblings), else Debian's versioned folder (its
    packages keep them off PATH), the newest version."""
    if found := shutil.which("initdb"):
        return Path(found).resolve().parent
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return debian[-1].parent if debian else None


def postgres_unavailable() -> str | None:
    """Why the PostgreSQL backend cannot run here (None: it can)."""
    missing = [m for m in ("psycopg", "pymemcache") if importlib.util.find_spec(m) is None]
    if missing:
        return f"no {' or '.join(missing)} (pip install -e '.[examples]')"
    found = {"postgresql": postgres_bin(), "memcached": shutil.which("memcached")}
    if missing := [name for name, path in found.items() if path is None]:
        return f"no {' or '.join(missing)} binaries (examples/socialnetwork/install-postgres.sh)"
    return None


def _as_unprivileged() -> tuple[list[str], int, int]:
    """argv prefix that drops root to an unprivileged user, and that user's uid/gid
    (the current ones when not root)."""
    if os.geteuid() != 0:
        return [], os.geteuid(), os.getegid()
    user = pwd.getpwnam(_UNPRIVILEGED)
    prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    return prefix, user.pw_uid, user.pw_gid


@contextlib.contextmanager
def app_postgres() -> Iterator[str]:
    """Start a throwaway PostgreSQL and yield its URL (superuser `app`, database
    `postgres`, trusted local connections). It listens on a unix socket only, in a
    temporary folder of its own that also holds its data: no port to collide on, and
    a folder the unprivileged server user may write (a test's tmp_path is root's own)."""
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("no PostgreSQL binaries (examples/socialnetwork/install-postgres.sh)")
    prefix, uid, gid = _as_unprivileged()
    home = Path(tempfile.mkdtemp(prefix="socialnet-pg-"))
    os.chown(home, uid, gid)
    data = home / "data"
    try:
        initdb = subprocess.run(
            [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "app", "--auth=trust",
             "--locale=C", "--encoding=UTF8", "--no-sync"],
            cwd=home, capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed: {initdb.stderr.decode(errors='replace')[-2000:]}")
        # Durability off (the data is thrown away); enough connections for every
        # slot process of a test platform holding one for its life.
        argv = [
            *prefix, str(bindir / "postgres"), "-D", str(data), "-k", str(home),
            "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-c", "max_connections=200",
            "-c", "shared_buffers=64MB",
        ]  # fmt: skip
        isready = [str(bindir / "pg_isready"), "-q", "-h", str(home), "-U", "app"]
        server = Process("app-postgres", argv, {}, home).start()
        try:
            _wait_until(
                lambda: subprocess.run(isready, check=False).returncode == 0,
                server, "postgres", timeout_s=30, log=home / "app-postgres.log",
            )  # fmt: skip
            yield f"postgresql://app@/postgres?host={quote(str(home), safe='')}"
        finally:
            # SIGINT: a fast shutdown, which does not wait for clients to disconnect
            # (a slot process keeps its connection for its life).
            if server.popen is not None and server.alive():
                server.popen.send_signal(signal.SIGINT)
            if not server.wait(15):
                server.kill()
    finally:
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def app_memcached(port: int = 0, memory_mb: int = 64) -> Iterator[str]:
    """Start a memcached on 127.0.0.1 and yield its HOST:PORT; stopped on exit."""
    port = port or free_port()
    argv = ["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", str(memory_mb)]
    if os.geteuid() == 0:
        argv += ["-u", _UNPRIVILEGED]
    server = Process("app-memcached", argv, {}, None).start()
    try:
        _wait_until(lambda: _memcached_answers(port), server, "memcached", timeout_s=15)
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(timeout_s=5)


@contextlib.contextmanager
def app_postgres_memcached() -> Iterator[str]:
    """Both, and the store URL that names them (see store.open_store)."""
    with app_postgres() as postgres, app_memcached() as memcached:
        yield f"{postgres}&memcached={memcached}"


def _memcached_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"version\r\n")
            return conn.recv(64).startswith(b"VERSION")
    except OSError:
        return False


def _wait_until(
    ready: Callable[[], bool], server: Process, name: str, timeout_s: float, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not server.alive():
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"the app's {name} exited ({server.returncode}) {tail}")
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"the app's {name} did not answer within {timeout_s} s")
