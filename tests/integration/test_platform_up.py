"""`faas up` as a user runs it (a real subprocess): it keeps its embedded Redis
alive, and refuses to start twice on the same port or the same data directory."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pickle
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import userfuncs

from faas.platform import free_port
from tests.conftest import INTEGRATION_DIR, execute, register


class FaasUp:
    """A running `faas up`, its output read line by line as it comes."""

    def __init__(self, port: int, data_dir: Path, *options: str) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "faas.cli", "up", "--port", str(port),
             "--data-dir", str(data_dir), *options],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONPATH": str(INTEGRATION_DIR)},
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, pattern: str, timeout_s: float = 60) -> re.Match[str]:
        """The first line from now on that matches `pattern`."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if found := re.search(pattern, line):
                return found
        raise AssertionError(f"no line matching {pattern!r} within {timeout_s} s: {self.seen}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        finally:
            self._reader.join(timeout=10)
            assert self.proc.stdout is not None
            self.proc.stdout.close()


@contextlib.contextmanager
def faas_up(data_dir: Path, *options: str) -> Iterator[FaasUp]:
    up = FaasUp(free_port(), data_dir, *options)
    try:
        up.expect("^faas is up")
        yield up
    finally:
        up.stop()


def refused(port: int, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faas.cli", "up", "--port", str(port), "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def wait_through_outage(
    http: httpx.Client, task_ids: list[str], timeout_s: float
) -> dict[str, dict]:
    """Every task's final view. The gateway may answer 503 (Redis unavailable) while
    its connections to the restarted Redis are replaced: ask again then."""
    deadline = time.monotonic() + timeout_s
    views: dict[str, dict] = {}
    while len(views) < len(task_ids) and time.monotonic() < deadline:
        pending = [t for t in task_ids if t not in views]
        response = http.post("/v1/tasks/wait", json={"task_ids": pending, "wait": 5})
        if response.status_code == 503:
            time.sleep(0.1)
            continue
        assert response.status_code == 200, response.text
        views |= {v["task_id"]: v for v in response.json()["tasks"]
                  if v["status"] in ("COMPLETED", "FAILED")}  # fmt: skip
    assert len(views) == len(task_ids), f"{len(task_ids) - len(views)} tasks never ended"
    return views


def redis_pid(port: int, data_dir: Path) -> int:
    """As admin: the embedded Redis refuses anonymous clients."""
    password = json.loads((data_dir / "redis-passwords.json").read_text())["admin"]
    with redis.Redis(port=port, username="admin", password=password) as client:
        return int(client.info("server")["process_id"])


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaasUp]:
    with faas_up(tmp_path_factory.mktemp("first"), "--slots", "1") as up:
        yield up


def test_a_second_faas_up_on_a_taken_port_refuses(first: FaasUp, tmp_path: Path) -> None:
    done = refused(first.port, tmp_path / "other-data")
    assert done.returncode == 1, done
    assert "faas is up" not in done.stdout
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and str(first.port) in errors[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "other-data").exists()  # refused before starting anything
    assert httpx.get(first.url + "/readyz").status_code == 200  # the first one is unharmed


def test_a_second_platform_on_the_same_data_dir_refuses(first: FaasUp) -> None:
    data_dir = Path(first.proc.args[first.proc.args.index("--data-dir") + 1])
    done = refused(free_port(), data_dir)
    assert done.returncode == 1, done
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and f"(pid {first.proc.pid})" in errors[0], done.stderr
    assert httpx.get(first.url + "/readyz").status_code == 200


def test_gateway_workers_are_that_many_server_processes(tmp_path: Path) -> None:
    with faas_up(tmp_path / "data", "--gateway-workers", "2") as up:
        (gateway,) = [p.name for p in Path("/proc").iterdir() if p.name.isdigit()
                      and f"-m gateway --host 127.0.0.1 --port {up.port} " in _cmdline(p.name)]  # fmt: skip
        children = Path(f"/proc/{gateway}/task/{gateway}/children").read_text().split()
        servers = [c for c in children if "spawn_main" in _cmdline(c)]
        assert len(servers) == 2, [_cmdline(c) for c in children]
        with httpx.Client(base_url=up.url, timeout=60) as http:
            task_ids = [execute(http, register(http, userfuncs.double), i) for i in range(20)]
            views = wait_through_outage(http, task_ids, timeout_s=60)
        assert sorted(pickle.loads(base64.b64decode(v["result"])) for v in views.values()) == [
            2 * i for i in range(20)
        ]


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:  # gone meanwhile
        return ""


def test_a_killed_redis_comes_back_and_no_task_is_lost(tmp_path: Path) -> None:
    executions = tmp_path / "executions"
    with (
        faas_up(tmp_path / "data", "--mode", "pull", "--workers", "2", "--slots", "2") as up,
        httpx.Client(base_url=up.url, timeout=60) as http,
    ):
        redis_port = int(up.expect(r"redis:\s+redis://127\.0\.0\.1:(\d+)/").group(1))
        record = register(http, userfuncs.record)
        task_ids = [execute(http, record, str(executions), i, 0.1) for i in range(60)]
        deadline = time.monotonic() + 60
        while not executions.exists() or len(executions.read_text().split()) < 5:
            assert time.monotonic() < deadline, "tasks did not start"
            time.sleep(0.02)

        first_pid = redis_pid(redis_port, tmp_path / "data")
        os.kill(first_pid, signal.SIGKILL)
        up.expect(f"redis is back on port {redis_port}")
        assert redis_pid(redis_port, tmp_path / "data") != first_pid

        views = wait_through_outage(http, task_ids, timeout_s=120)
    up.expect(r"^stopped\.$")  # Ctrl-C (SIGINT) drained and stopped it cleanly
    assert up.proc.returncode == 0
    assert all(v["status"] == "COMPLETED" for v in views.values()), views
    ran = executions.read_text().split()
    assert sorted(set(ran), key=int) == [str(i) for i in range(60)]
    assert len(ran) == 60, f"{len(ran) - 60} tasks ran twice"
