"""Preloaded by the slots' fork server, and imported nowhere else: ask Linux to
SIGKILL the fork server when the worker that started it dies.

Slots are children of the fork server, not of the worker, so their own
PR_SET_PDEATHSIG fires only when the fork server dies. Tying the fork server to
the worker closes the chain: a worker killed by any signal takes its fork server
with it, and the fork server its slots, so no user code outlives its worker.

It also scrubs the environment the slots inherit down to an allow-list
(`common.hardening`), and makes itself non-dumpable, so a slot finds no secret in
its own environment nor in /proc/<fork server>/environ. Slots keep freed memory for
their next task (`common.memory`).

It ignores SIGTERM (multiprocessing already ignores SIGINT there), so a
SIGTERM sent to the worker's whole process group drains the worker as a SIGTERM
to the worker alone does, instead of killing the slots under running tasks.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal

from common.hardening import protect_process, scrub_environment
from common.memory import keep_freed_memory

_PR_SET_PDEATHSIG = 1

with contextlib.suppress(OSError, AttributeError):
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
protect_process()
scrub_environment()
keep_freed_memory()  # the slots fork from here, and inherit it
