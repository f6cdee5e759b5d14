"""The design's floor that `python -m bench --baselines floor` measures the platform
against (bench/baselines/floor.py): its real processes (redis-server, gateway,
dispatcher, slots over ZeroMQ) answer calls right, and all of them stop with it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import cloudpickle

from bench.ports import Ports
from bench.sidebyside import start_baseline


def _descendants(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True)
    children: dict[int, list[int]] = {}
    for line in out.stdout.splitlines():
        child, parent = map(int, line.split())
        children.setdefault(parent, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _running(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def test_the_floor_answers_calls_and_stops_with_its_side(tmp_path) -> None:  # type: ignore[no-untyped-def]
    floor = start_baseline("floor", 2, Ports(None), tmp_path)
    try:
        # redis-server, gateway, dispatcher and one process per slot
        processes = _descendants(floor.side.proc.pid)
        assert len(processes) >= 5, processes
        assert floor.w2(10) is None  # latency only
        assert len(floor.w1(20)) == 20
        blob = os.urandom(300_000)
        echoed = floor._call("echo", cloudpickle.dumps(((blob,), {})))
        assert cloudpickle.loads(echoed) == blob
        assert len(floor.w4(2)) == 2
    finally:
        floor.close()
    alive = [p for p in processes if _running(p)]
    assert not alive, f"left running: {alive}"
