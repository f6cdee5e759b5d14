"""Per-function Python environments: a directory per content hash, materialized once
per host, that a slot puts first on its `sys.path`.

Layout on disk (`root` may be a volume shared by several workers of one host)::

    root/<abi>/                      abi = interpreter cache tag + machine, e.g.
                                     cpython-311-x86_64: wheels are ABI-specific, so
                                     workers on another Python never share a dir
    root/<abi>/<key>/                a finished environment (pip --target layout,
                                     then each bundle unzipped over it)
    root/<abi>/<key>/.faas-env-complete
                                     marker, written (and the whole tree fsynced)
                                     before the rename that publishes the dir; it
                                     records the dir's size on disk, measured once
    root/<abi>/<key>.lock            (0600) flock'ed exclusively by whichever process
                                     installs or evicts <key>, shared by each
                                     process running a task in it; its mtime is
                                     the env's last use. Never deleted (unlinking
                                     a lock file races with its next flock)
    root/<abi>/.tmp-<key>-<random>/  an install in progress, or debris of a crashed
                                     one (removed by the next installer of <key>)
    root/<abi>/.trash-<key>-<random>/
                                     an evicted env being deleted (or debris of a
                                     crashed evictor, removed by the next eviction)

`key` is `EnvSpec.key`: a sha256 over the sorted, whitespace-normalized
requirements and each bundle's sha256, in order (later bundles overwrite earlier
ones). A directory at `<key>` without the marker is incomplete and is redone.

Concurrency rules:
- `request` never blocks on an install: it looks at in-memory state (and, for a
  key it has not seen, stats one marker file), and otherwise starts the install
  on a thread pool of `max_concurrent_installs` and answers `Pending`. The worker's
  loop calls it again on a later tick.
- In one process, one install per key: a Future per key, under a lock.
- Across processes: the installing thread holds `flock(<key>.lock)` from the
  marker check to the rename, so of several workers on a host one runs pip and
  the others, once they get the lock, find the marker and are done.
- A failure (pip's exit code, its timeout, a bad or zip-slip bundle) is
  remembered in this process for `failure_ttl_s`, then a new request retries.
  Failures are not shared across processes: each worker retries pip once per TTL.

Eviction (`max_bytes` > 0): after each install, while the finished environments'
recorded sizes add up to more than `max_bytes`, the least recently used one is
deleted, unless it is the one just installed or in use. A worker `acquire`s an
environment before a slot runs a task in it and `release`s it when the task ends:
a shared flock held meanwhile, which the evictor's non-blocking exclusive flock
cannot get, so an environment in use by any worker on the host is skipped. The
evictor renames the dir away before deleting it (a half-deleted env is never used);
`acquire` takes its shared lock and then checks the marker, so a task never starts
in an evicted env: the next request installs it again.

The empty spec (no requirements, no bundles) is `Ready` at once: an empty
directory made in `__init__`, so callers need no "no environment" special case.

pip runs as `python -I -m pip install --target ...` with this interpreter, in its
own process group (killed as a whole on timeout or `close`), with the slots'
allow-listed environment plus pip's own settings, never the worker's secrets.
Installing an sdist runs its build code in that process, outside any slot's
limits: `only_binary=True` forbids sdists where that matters.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from common import bundles
from common.hardening import SLOT_ENV_NAMES, SLOT_ENV_PREFIXES
from common.requirements import validate_requirements

logger = logging.getLogger(__name__)

MARKER = ".faas-env-complete"
OUTPUT_TAIL_BYTES = 2048
# What pip may see besides the slots' allow-list: its own settings (proxies,
# certificates, index credentials) and nothing of the platform's.
_PIP_ENV_PREFIXES = ("PIP_",)
_PIP_ENV_NAMES = frozenset(
    {"http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
     "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"}
)  # fmt: skip


@dataclass(frozen=True)
class EnvSpec:
    requirements: tuple[str, ...] = ()
    bundles: tuple[bytes, ...] = ()  # zip files' bytes
    _normalized: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Validated at construction so a bad spec fails where it was written.
        reqs = tuple(self.requirements)
        if any(not isinstance(b, bytes | bytearray) for b in self.bundles):
            raise ValueError("bundles must be bytes (zip files)")
        object.__setattr__(self, "requirements", reqs)
        object.__setattr__(self, "bundles", tuple(bytes(b) for b in self.bundles))
        object.__setattr__(self, "_normalized", validate_requirements(reqs))
        # Hashed once: the loop asks for the key of the same spec on every tick.
        digest = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode())
        object.__setattr__(self, "_key", digest.hexdigest())

    def identity(self) -> dict[str, object]:
        """What the key hashes (also written into the marker, for humans)."""
        return {
            "v": 1,
            "requirements": list(self._normalized),
            "bundles": [hashlib.sha256(b).hexdigest() for b in self.bundles],
        }

    @property
    def key(self) -> str:
        return self._key


@dataclass(frozen=True)
class Ready:
    path: Path


@dataclass(frozen=True)
class Pending:
    pass


@dataclass(frozen=True)
class Failed:
    message: str


@dataclass(slots=True)
class _Pin:
    lock: IO[bytes]  # the env's lock file, flock'ed shared
    users: int


class InstallError(Exception):
    """An install that failed for a reason worth telling the user (becomes Failed)."""


def _monotonic() -> float:
    """The clock of the failure cache (a seam: tests move it past the TTL)."""
    return time.monotonic()


def abi_tag() -> str:
    return f"{sys.implementation.cache_tag}-{platform.machine() or 'unknown'}"


class Environments:
    def __init__(
        self,
        root: Path,
        *,
        index_url: str | None = None,
        find_links: Sequence[str] = (),
        no_index: bool = False,
        trusted_hosts: Sequence[str] = (),
        only_binary: bool = False,
        failure_ttl_s: float = 60.0,
        max_concurrent_installs: int = 2,
        pip_timeout_s: float = 600.0,
        max_bytes: int = 0,
    ) -> None:
        self.root = Path(root) / abi_tag()
        self.root.mkdir(parents=True, exist_ok=True)
        self._pip_options: list[str] = []
        if index_url:
            self._pip_options += ["--index-url", index_url]
        for link in find_links:
            self._pip_options += ["--find-links", link]
        if no_index:
            self._pip_options.append("--no-index")
        for host in trusted_hosts:
            self._pip_options += ["--trusted-host", host]
        if only_binary:
            self._pip_options.append("--only-binary=:all:")
        self._failure_ttl_s = failure_ttl_s
        self._pip_timeout_s = pip_timeout_s
        # Read once, here: the install threads must not read os.environ while the worker
        # narrows it to start the slots' fork server (common.hardening.slot_environment).
        self._pip_env = {
            name: value
            for name, value in os.environ.items()
            if (name in SLOT_ENV_NAMES | _PIP_ENV_NAMES
                or name.startswith(SLOT_ENV_PREFIXES + _PIP_ENV_PREFIXES))
            and name != "PYTHONPATH"
        }  # fmt: skip
        self._pip_env["PIP_ROOT_USER_ACTION"] = "ignore"  # containers run as root; no warning
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_concurrent_installs, thread_name_prefix="env-install"
        )
        self._lock = threading.Lock()
        self._ready: dict[str, Path] = {}
        self._installing: dict[str, concurrent.futures.Future[Path]] = {}
        self._failed: dict[str, tuple[Failed, float]] = {}  # key -> (failure, expires at)
        self._pips: set[subprocess.Popen[bytes]] = set()
        self._pins: dict[str, _Pin] = {}
        self._closed = False
        self._max_bytes = max_bytes  # 0: no cap
        self.pip_runs = 0  # pip invocations by this instance (figures, tests)
        self.evictions = 0  # environments this instance deleted (figures, tests)
        empty = EnvSpec()
        self._empty_key = empty.key
        self._ready[empty.key] = self._materialize(empty)
        if max_bytes:  # the cap may have been lowered since the last run
            self._pool.submit(self._evict, "")

    def request(self, spec: EnvSpec) -> Ready | Pending | Failed:
        """The state of `spec`'s environment; starts its install if none is known.
        Never waits for an install."""
        key = spec.key
        with self._lock:
            if key in self._ready:
                return Ready(self._ready[key])
            future = self._installing.get(key)
            if future is not None and not future.done():
                return Pending()
            if future is not None:
                del self._installing[key]
                return self._settle(key, future)
            failed = self._failed.get(key)
            if failed is not None:
                if _monotonic() < failed[1]:
                    return failed[0]
                del self._failed[key]
            if self._complete(self.root / key):  # finished by another process
                self._ready[key] = self.root / key
                return Ready(self.root / key)
            if self._closed:
                return Failed("environments are shut down")
            self._installing[key] = self._pool.submit(self._materialize, spec)
            return Pending()

    def wait(self, spec: EnvSpec, timeout_s: float) -> Ready | Failed:
        """Block until `spec` is Ready or Failed (for tests and tools); raise
        TimeoutError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.request(spec)
            if not isinstance(state, Pending):
                return state
            with self._lock:
                future = self._installing.get(spec.key)
            if future is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"environment {spec.key[:12]} not ready in {timeout_s} s")
                concurrent.futures.wait([future], timeout=remaining)

    def acquire(self, key: str) -> bool:
        """Pin the Ready environment `key` for a task about to run in it, so that no
        eviction (here or in another worker) deletes it until `release`; also marks
        it used. False if it is being installed or evicted right now (ask again
        later), or is gone: then it is no longer Ready, and the next `request`
        installs it again."""
        with self._lock:
            pin = self._pins.get(key)
            if pin is not None:
                pin.users += 1
                return True
            lock = self._open_lock(key)  # kept open while pinned
            try:
                fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                return False
            if not self._complete(self.root / key):  # evicted (by another worker)
                lock.close()
                self._ready.pop(key, None)
                return False
            os.utime(lock.fileno())
            self._pins[key] = _Pin(lock, 1)
            return True

    def release(self, key: str) -> None:
        """A task that `acquire`d `key` ended."""
        with self._lock:
            pin = self._pins[key]
            pin.users -= 1
            if pin.users == 0:
                del self._pins[key]
                with contextlib.suppress(OSError):
                    os.utime(pin.lock.fileno())  # its last use ends now
                pin.lock.close()  # unlocks

    def disk_usage(self, key: str) -> int:
        """Bytes allocated on disk by the environment `key` (like `du`); 0 if absent."""
        return _disk_usage(self.root / key)

    def close(self) -> None:
        """Stop: cancel queued installs and kill running pips (their envs stay
        unpublished and are redone by the next request, here or elsewhere)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:  # held: no pip is reaped meanwhile, so its pid is still its own
            self._closed = True
            for proc in self._pips:
                _kill_group(proc)
            for pin in self._pins.values():
                pin.lock.close()
            self._pins.clear()

    # Internals. ------------------------------------------------------------------

    def _settle(self, key: str, future: concurrent.futures.Future[Path]) -> Ready | Failed:
        """Record a finished install's outcome (caller holds self._lock)."""
        try:
            path = future.result()
        except concurrent.futures.CancelledError:
            return Failed("install cancelled: environments are shut down")
        except InstallError as e:
            failed = Failed(str(e))
        except Exception as e:  # a bug or the disk (ENOSPC): still an answer for the user
            failed = Failed(f"installing environment {key[:12]} failed: {type(e).__name__}: {e}")
        else:
            self._ready[key] = path
            return Ready(path)
        self._failed[key] = (failed, _monotonic() + self._failure_ttl_s)
        return failed

    def _open_lock(self, key: str) -> IO[bytes]:
        """`key`'s lock file, 0600: slots running as another uid cannot open it, so
        user code cannot hold off an install or an eviction with a lock of its own."""
        fd = os.open(self.root / f"{key}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return os.fdopen(fd, "r+b")

    @staticmethod
    def _complete(path: Path) -> bool:
        return (path / MARKER).is_file()

    def _materialize(self, spec: EnvSpec) -> Path:
        """Install `spec` into root/<key> unless some process already did. Blocking."""
        key = spec.key
        final = self.root / key
        if self._complete(final):
            return final
        with self._open_lock(key) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # blocks this pool thread, never the loop
            if self._complete(final):
                return final
            # Under the lock no other process works on `key`: what is here is debris.
            for debris in self.root.glob(f".tmp-{key}-*"):
                shutil.rmtree(debris, ignore_errors=True)
            if final.exists():
                shutil.rmtree(final)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=self.root))
            try:
                os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide it from other uids
                if spec._normalized:
                    self._pip_install(spec, tmp)
                for i, bundle in enumerate(spec.bundles):
                    _unzip(bundle, tmp, f"bundle {i + 1} of {len(spec.bundles)}")
                info = {**spec.identity(), "created": time.time(), "bytes": _disk_usage(tmp)}
                (tmp / MARKER).write_text(json.dumps(info))
                # The marker must not outlive a power cut that loses the files.
                _fsync_tree(tmp)
                os.rename(tmp, final)
                _fsync_dir(self.root)
                os.utime(lock.fileno())  # its first use is about to come
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        if self._max_bytes:
            self._evict(keep=key)
        return final

    def _evict(self, keep: str) -> None:
        """Delete least recently used environments until the rest fit `max_bytes`,
        never `keep` (just installed, about to be used) nor one in use. Runs on the
        install pool; a failure here is logged, never the install's."""
        try:
            for debris in self.root.glob(".trash-*"):
                shutil.rmtree(debris, ignore_errors=True)
            found = [(self._last_use(key), key, self._recorded_bytes(key))
                     for key in self._finished_keys()]  # fmt: skip
            total = sum(size for _, _, size in found)
            for _, key, size in sorted(found):
                if total <= self._max_bytes:
                    break
                if key not in (keep, self._empty_key) and self._evict_one(key):
                    total -= size
            if total > self._max_bytes:
                logger.warning("environments use %d bytes, over the cap of %d: the rest "
                               "are in use", total, self._max_bytes)  # fmt: skip
        except OSError:
            logger.exception("evicting environments failed")

    def _evict_one(self, key: str) -> bool:
        with self._open_lock(key) as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # in use, or being installed or evicted elsewhere
            if not self._complete(self.root / key):
                return False
            with self._lock:
                self._ready.pop(key, None)
            trash = self.root / f".trash-{key}-{uuid.uuid4().hex}"
            os.rename(self.root / key, trash)  # from here on, `acquire` sees it gone
        shutil.rmtree(trash, ignore_errors=True)
        with self._lock:
            self.evictions += 1
        logger.info("evicted environment %s", key[:12])
        return True

    def _finished_keys(self) -> list[str]:
        return [entry.name for entry in os.scandir(self.root)
                if not entry.name.startswith(".") and self._complete(Path(entry.path))]  # fmt: skip

    def _last_use(self, key: str) -> float:
        try:
            return os.stat(self.root / f"{key}.lock").st_mtime
        except FileNotFoundError:
            return 0.0

    def _recorded_bytes(self, key: str) -> int:
        try:
            return int(json.loads((self.root / key / MARKER).read_text())["bytes"])
        except (OSError, ValueError, KeyError, TypeError):  # an older marker: measure it
            return _disk_usage(self.root / key)

    def _pip_install(self, spec: EnvSpec, target: Path) -> None:
        cmd = [sys.executable, "-I", "-m", "pip", "install", "--target", str(target),
               "--no-input", "--disable-pip-version-check", "--no-warn-script-location",
               *self._pip_options, "--", *spec._normalized]  # fmt: skip
        started = time.monotonic()
        with tempfile.TemporaryFile() as out:  # on disk: pip can be chatty
            with self._lock:
                if self._closed:
                    raise InstallError("install cancelled: environments are shut down")
                self.pip_runs += 1
                proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    cwd=self.root, env=self._pip_env, start_new_session=True,
                )  # fmt: skip
                self._pips.add(proc)
            try:
                code: int | None = proc.wait(timeout=self._pip_timeout_s)
            except subprocess.TimeoutExpired:
                code = None
                _kill_group(proc)  # pip's build backends run in child processes
            finally:
                with self._lock:
                    proc.wait()
                    self._pips.discard(proc)
            if code == 0:
                return
            elapsed = time.monotonic() - started
            what = (
                f"timed out after {self._pip_timeout_s:g} s"
                if code is None
                else f"exited with code {code} after {elapsed:.1f} s"
            )
            raise InstallError(
                f"installing {', '.join(spec._normalized)} failed: pip {what}. "
                f"pip's last output: {_tail(out)}"
            )


def _disk_usage(top: Path) -> int:
    """Bytes allocated on disk under `top` (like `du`); 0 if absent."""
    total = 0
    for dirpath, _dirs, files in os.walk(top):
        for name in [*files, "."]:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _tail(out: IO[bytes]) -> str:
    """The last OUTPUT_TAIL_BYTES of a file as one line per pip line, ' | '-joined."""
    size = out.seek(0, os.SEEK_END)
    out.seek(max(0, size - OUTPUT_TAIL_BYTES))
    text = out.read().decode(errors="replace")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    joined = " | ".join(line for line in lines if line)
    return ("..." + joined if size > OUTPUT_TAIL_BYTES else joined) or "(none)"


def _unzip(data: bytes, target: Path, name: str) -> None:
    try:
        bundles.unpack(data, target, name)
    except bundles.BundleRefused as e:
        raise InstallError(str(e)) from None


def _fsync_tree(top: Path) -> None:
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            if os.path.islink(os.path.join(dirpath, name)):
                continue
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
