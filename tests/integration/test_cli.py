"""The `faas` command as a user runs it: a real subprocess against a real platform,
a closed port, or a server that never answers. Errors are one line, never a traceback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.models import DispatchMode
from faas.client import loads
from faas.platform import LocalPlatform, free_port
from tests.conftest import make_platform

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def faas(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faas.cli", *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def assert_one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("error: ")
    for fragment in fragments:
        assert fragment in done.stderr


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    with make_platform(tmp_path_factory.mktemp("cli"), DispatchMode.LOCAL, slots=2) as platform:
        yield platform


@pytest.fixture(scope="module")
def power(running: LocalPlatform, tmp_path_factory: pytest.TempPathFactory) -> str:
    source = tmp_path_factory.mktemp("code") / "mathfns.py"
    source.write_text("def power(base, exp=2):\n    return base ** exp\n")
    done = faas("register", f"{source}:power", "--url", running.url)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_version() -> None:
    done = faas("--version")
    assert done.returncode == 0 and done.stdout.startswith("faas 0."), done


def test_an_unreachable_gateway_is_one_line_naming_it() -> None:
    port = free_port()  # nothing listens there
    for args in (["--url", f"127.0.0.1:{port}", "functions"], ["status", UNKNOWN_ID]):
        done = faas(*args, env={"FAAS_URL": f"http://127.0.0.1:{port}"})
        assert_one_line_error(done, f"http://127.0.0.1:{port}", "faas up")


def test_a_url_that_is_not_http_is_refused_in_one_line() -> None:
    assert_one_line_error(faas("--url", "ftp://example.invalid", "functions"), "ftp://")


def test_faas_up_refuses_counts_under_one_before_starting(tmp_path: Path) -> None:
    for option in ("--slots", "--workers", "--gateway-workers"):
        done = faas("up", option, "0", "--data-dir", str(tmp_path / "data"))
        assert done.returncode == 2 and f"argument {option}: must be at least 1" in done.stderr
        assert not (tmp_path / "data").exists()  # nothing started
    done = faas("up", "--prefetch", "-1", "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 2 and "argument --prefetch: must be at least 0" in done.stderr


def test_global_options_go_before_or_after_the_command(running: LocalPlatform, power: str) -> None:
    for args in (["--url", running.url, "functions", "--json"],
                 ["functions", "--json", "--url", running.url.removeprefix("http://")]):  # fmt: skip
        done = faas(*args)
        assert done.returncode == 0, done.stderr
        assert power in [f["function_id"] for f in json.loads(done.stdout)]


def test_unknown_ids_are_one_line(running: LocalPlatform) -> None:
    for command in ("status", "result", "task"):
        assert_one_line_error(faas(command, UNKNOWN_ID, "--url", running.url), "404")
    assert_one_line_error(faas("call", UNKNOWN_ID, "1", "--url", running.url), "404")
    assert_one_line_error(faas("status", "not-an-id", "--url", running.url), "400")


def test_bad_files_are_one_line(running: LocalPlatform, tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n")
    raising = tmp_path / "raising.py"
    raising.write_text("raise ImportError('no numpy here')\n")
    fine = tmp_path / "fine.py"
    fine.write_text("def f():\n    return 1\n")
    url = ["--url", running.url]
    assert_one_line_error(faas("register", "nosuch.py:f", *url), "no such file: nosuch.py")
    assert_one_line_error(faas("register", f"{broken}:f", *url), "SyntaxError")
    assert_one_line_error(faas("register", f"{raising}:f", *url), "no numpy here")
    assert_one_line_error(faas("register", f"{fine}:g", *url), "has no function g")
    assert_one_line_error(faas("register", "fine.py", *url), "FILE.py:FUNCTION")


def test_results_are_decoded_and_raw_on_request(running: LocalPlatform, power: str) -> None:
    url = ["--url", running.url]
    assert faas("call", power, "3", "exp=3", *url).stdout.strip() == "27"
    task_id = faas("submit", power, "4", *url).stdout.strip()
    assert faas("result", task_id, *url).stdout.strip() == "16"
    assert loads(faas("result", task_id, "--raw", *url).stdout.strip()) == 16
    assert json.loads(faas("result", task_id, "--json", *url).stdout)["result"] == "16"
    assert json.loads(faas("status", task_id, "--json", *url).stdout)["status"] == "COMPLETED"

    shown = faas("task", task_id, *url).stdout
    assert "COMPLETED (attempt 1 of 3)" in shown and "\nresult    16\n" in shown + "\n", shown
    assert " ago)" in shown and "ms_" not in shown  # dates, not epoch milliseconds
    view = json.loads(faas("task", task_id, "--json", "--raw", *url).stdout)
    assert loads(view["result"]) == 16 and view["attempt"] == 1


def test_a_failed_call_is_one_line(running: LocalPlatform, tmp_path: Path) -> None:
    source = tmp_path / "fails.py"
    source.write_text("def inverse(x):\n    return 1 / x\n")
    url = ["--url", running.url]
    function_id = faas("register", f"{source}:inverse", *url).stdout.strip()
    assert_one_line_error(faas("call", function_id, "0", *url), "ZeroDivisionError")


def test_ctrl_c_is_one_line_and_exit_130() -> None:
    """Against a server that accepts and never answers: the CLI is inside its request
    once the connection is accepted."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(30)
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        cli = subprocess.Popen(
            [sys.executable, "-m", "faas.cli", "--url", url, "functions"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            connection, _ = server.accept()
            with connection:
                cli.send_signal(signal.SIGINT)
                out, err = cli.communicate(timeout=30)
        finally:
            if cli.poll() is None:
                cli.kill()
    assert cli.returncode == 130, (out, err)
    assert err.strip() == "interrupted" and not out
