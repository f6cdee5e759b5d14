"""One platform per data directory: an exclusive flock on `<data dir>/faas.lock`,
held for the platform's life. Two redis-servers on the same append-only files
would corrupt them; the kernel drops the lock when its holder dies, kill -9
included, so a crash never leaves a stale lock behind."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class DataDirInUse(RuntimeError):
    pass


class DataDirLock:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "faas.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirInUse(
                f"data directory {self.directory} is in use by another faas platform"
                f" (pid {holder}); stop it or pick another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
