"""What every component does to its own process so that user code, which runs in
slot processes under the same uid, cannot read its secrets.

`PR_SET_DUMPABLE 0` makes /proc/<pid>/environ, /proc/<pid>/mem and ptrace of the
process root-only, so a slot cannot read the Redis URL, the API key or the CURVE
keys from a component's environment. It does not hold against root: where the
platform runs as root, so do the slots (see SECURITY.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

_PR_SET_DUMPABLE = 4

# What a slot's environment keeps: the basics of a Unix process and of Python, and
# the knobs of numeric libraries. Everything else (FAAS_*, REDIS*, service
# addresses, cloud credentials) is dropped.
SLOT_ENV_NAMES = frozenset(
    {"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM", "USER", "LOGNAME",
     "PYTHONPATH", "PYTHONHASHSEED", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE",
     "PYTHONIOENCODING", "VIRTUAL_ENV", "SSL_CERT_FILE", "SSL_CERT_DIR"}
)  # fmt: skip
SLOT_ENV_PREFIXES = ("LC_", "OMP_", "OPENBLAS_", "MKL_", "NUMEXPR_")


def protect_process() -> None:
    """Make this process's /proc entries and memory unreadable to same-uid peers."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0)


def scrub_environment() -> None:
    """Reduce os.environ to what a slot may see (done in the slots' fork server)."""
    for name in list(os.environ):
        if name not in SLOT_ENV_NAMES and not name.startswith(SLOT_ENV_PREFIXES):
            del os.environ[name]


@contextlib.contextmanager
def slot_environment() -> Iterator[None]:
    """os.environ reduced to what a slot may see while a process that slots fork from
    is started. Scrubbing os.environ inside that process is not enough: the block it
    was started with stays in its memory, and so in every slot forked from it, which
    reads it back from /proc/self/environ (the worker's CURVE key, once)."""
    saved = dict(os.environ)
    scrub_environment()
    try:
        yield
    finally:
        os.environ.update(saved)


def unreadable_by(uid: int, gid: int, paths: list[str]) -> list[str]:
    """Those of `paths` that uid:gid (no supplementary groups) could not read, judged
    from the mode bits of every directory on the way (as root, os.access cannot tell)."""

    def allows(st: os.stat_result, bits: int) -> bool:
        shift = 6 if st.st_uid == uid else 3 if st.st_gid == gid else 0
        return (st.st_mode >> shift) & bits == bits

    refused = []
    for path in paths:
        target = os.path.realpath(path)
        chain = [target]
        while chain[-1] != "/":
            chain.append(os.path.dirname(chain[-1]))
        try:
            ok = all(allows(os.stat(d), 1) for d in chain[1:]) and allows(
                os.stat(target), 5 if os.path.isdir(target) else 4
            )
        except OSError:
            continue  # not there: nothing to read
        if not ok:
            refused.append(target)
    return refused
