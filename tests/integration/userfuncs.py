"""Module-level functions the integration tests register with dill, which pickles
them by reference: the platform's processes get this folder on PYTHONPATH, just
as the README tells users to do with their own modules."""

from __future__ import annotations

import ctypes
import os
import time


def double(x):
    return x * 2


def add(a, b, c=0, *, scale=1):
    return (a + b + c) * scale


def echo(value):
    return value


def matmul(n):
    import numpy as np

    a = np.arange(n * n, dtype=float).reshape(n, n)
    return a @ a


class Rejected(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


def boom(code):
    raise Rejected(code, "no")


def nap(seconds):
    time.sleep(seconds)
    return seconds


def die(code):
    os._exit(code)


def segfault():
    ctypes.string_at(0)


def record(path, i, seconds=0.0):
    """Append `i` to `path` (one line per execution) so tests can count executions."""
    if seconds:
        time.sleep(seconds)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{i}\n".encode())
    finally:
        os.close(fd)
    return i


def chaos_task(log, i, kind, arg, ballast=b""):
    """One task of the chaos mix. Logs its start, so repeated executions can be counted.
    `ballast` only makes some tasks' arguments large (kept apart in Redis)."""
    record(log, i)
    if kind == "sleep":
        time.sleep(arg)
        return i
    if kind == "cpu":
        return sum(range(arg)) and i
    if kind == "raise":
        raise Rejected(i, "designed to fail")
    if kind == "numpy":
        import numpy as np

        return int(np.arange(arg).sum()) and i
    return i


def spin_forever(pidfile):
    """Never returns: writes its pid, then spins (tests that nothing outlives a worker)."""
    with open(pidfile, "w") as f:
        f.write(str(os.getpid()))
    while True:
        pass


def blob(size):
    return b"x" * size


def environment():
    return dict(os.environ)


def pid():
    return os.getpid()


def hold(release, marker=None):
    """Write `marker` (if given) once running, then block until the file `release`
    exists: a slot kept busy until the test lets it go."""
    if marker:
        record(marker, 0)
    while not os.path.exists(release):
        time.sleep(0.01)
    return release


def identity():
    """This slot's uid, gid and groups, and its two ancestors: the fork server and the
    worker (from /proc/<pid>/status, which any process may read)."""

    def parent(pid):
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("PPid:"))

    forkserver = os.getppid()
    return {
        "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
        "forkserver": forkserver, "worker": parent(forkserver),
    }  # fmt: skip


def own_environ_block():
    """The names in this slot's own /proc/self/environ: the block its process began
    with (a fork keeps its parent's), whatever os.environ says now."""
    with open("/proc/self/environ", "rb") as f:
        return sorted(item.split(b"=", 1)[0].decode() for item in f.read().split(b"\0") if item)


def tcp_sockets_held():
    """The TCP sockets among this slot's descriptors (a Redis connection would be one)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            inodes |= {line.split()[9] for line in f.readlines()[1:]}
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            held.append(target)
    return held


def read_environ(pids):
    """What this slot gets reading each process's /proc/<pid>/environ."""
    seen = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                seen[pid] = f.read()
        except OSError as exc:
            seen[pid] = type(exc).__name__
    return seen


def write_file(path):
    """Try to create a file at `path`; the error's name if refused."""
    try:
        with open(path, "w") as f:
            f.write("x")
    except OSError as exc:
        return type(exc).__name__
    return "written"


def import_and_uid(module):
    """Import a module no fork server preloads; this slot's uid."""
    __import__(module)
    return os.getuid()
