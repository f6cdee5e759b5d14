"""The slot pool with real slot processes: tenants never share a slot, slots are
recycled after max_tasks_per_slot, and resource limits apply to user code."""

from __future__ import annotations

import os
import pickle
import resource
import select
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pytest

from tests.probes import page_faults_per_megabyte_copy
from worker.pool import Job, SlotPool
from worker.slot import Limits


def pid() -> int:
    return os.getpid()


def open_files_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run(pool: SlotPool, fn, tenant: str = "") -> object:  # type: ignore[no-untyped-def]
    job = Job(str(uuid.uuid4()), 1, fn.__name__, cloudpickle.dumps(fn), pickle.dumps(((), {})), 10,
              tenant=tenant)  # fmt: skip
    pool.run(job)
    for _ in range(100):
        ready, _, _ = select.select(pool.fds(), [], [], 10)
        for fd in ready:
            result = pool.collect(fd)
            if result is not None and result.job is job:
                assert result.outcome == "ok", result.error
                return pickle.loads(result.result)
    raise AssertionError("the slot never answered")


@pytest.fixture
def pool(request: pytest.FixtureRequest) -> Iterator[SlotPool]:
    created = SlotPool(1, **getattr(request, "param", {}))
    yield created
    created.close()


def test_a_slot_never_runs_code_of_two_tenants(pool: SlotPool) -> None:
    first = run(pool, pid, "alice")
    assert run(pool, pid, "alice") == first  # warm slot, same tenant
    assert run(pool, pid, "bob") != first  # another tenant gets a fresh process


@pytest.mark.parametrize("pool", [{"max_tasks_per_slot": 2}], indirect=True)
def test_a_slot_is_replaced_after_max_tasks_per_slot(pool: SlotPool) -> None:
    pids = [run(pool, pid) for _ in range(3)]
    assert pids[0] == pids[1] != pids[2]


@pytest.mark.parametrize("pool", [{"limits": Limits(open_files=64)}], indirect=True)
def test_resource_limits_apply_inside_slots(pool: SlotPool) -> None:
    assert run(pool, open_files_limit) == 64


def test_a_slot_copies_large_payloads_without_faulting_in_fresh_pages(pool: SlotPool) -> None:
    """The fork server keeps freed memory (common.memory), and the slots inherit it."""
    assert run(pool, page_faults_per_megabyte_copy) < 10


def test_a_slots_link_has_the_largest_send_buffer_the_kernel_allows(pool: SlotPool) -> None:
    """So that a 1 MB job or result crosses in one write, not five (worker/pool.py)."""
    allowed = int(Path("/proc/sys/net/core/wmem_max").read_text())
    (fd,) = pool.fds()
    with socket.fromfd(fd, socket.AF_UNIX, socket.SOCK_STREAM) as link:
        # Linux doubles what it grants, for its bookkeeping
        assert link.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * min(allowed, 4 << 20)
