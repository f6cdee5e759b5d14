"""The side-by-side benchmark's pure logic (python -m bench --baselines/--compare): names,
ports, order, summaries, ratios, the side protocol and the arguments. Nothing timed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from bench import baselines, proc, sidebyside
from bench.__main__ import build_parser
from bench.ports import Ports, parse_range
from bench.proc import cpu_by_tree
from bench.side import Side

ROOT = Path(__file__).resolve().parents[2]


def test_baseline_names_are_parsed_once_each_in_order() -> None:
    assert baselines.parse("ray, Celery,ray") == ["ray", "celery"]
    assert baselines.parse("") == []
    with pytest.raises(ValueError, match="unknown baseline 'dask'"):
        baselines.parse("ray,dask")


def test_the_bench_extra_installs_what_the_baselines_name() -> None:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["bench"]
    for baseline in baselines.BASELINES.values():
        assert baseline.requirement is None or baseline.requirement in extra
    assert baselines.missing("floor") is None  # the platform's own dependencies


def test_the_bench_extra_cannot_pick_a_celery_with_a_pytest_plugin() -> None:
    # Celery 4 registers a pytest11 entry point (celery.contrib.pytest) that every pytest
    # run of the environment loads; 5.x (checked through 5.7) registers none.
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["bench"]
    (celery,) = [Requirement(r) for r in extra if Requirement(r).name == "celery"]
    assert not celery.specifier.contains("4.4.7")
    assert celery.specifier.contains("5.3.0")


def test_a_missing_baseline_says_how_to_install_it_in_one_line(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(baselines.importlib.util, "find_spec", lambda name: None)
    hint = baselines.missing("ray")
    assert hint is not None and "\n" not in hint
    assert "pip install -e '.[bench]'" in hint and "ray>=" in hint


def test_each_system_takes_each_place_in_turn() -> None:
    names = ["this/local", "ray", "celery"]
    orders = [sidebyside.rotation(names, r) for r in range(3)]
    assert orders[0] == names
    for place in range(3):
        assert {order[place] for order in orders} == set(names)
    assert sidebyside.rotation(names, 3) == names


def test_a_round_becomes_flat_figures_and_rounds_their_medians() -> None:
    w1 = [0.001 * (i + 1) for i in range(100)]  # 1..100 ms
    figures = sidebyside.round_figures(w1, {"tasks_per_s": 500}, {"tasks_per_s": 300}, [0.02])
    assert figures == {
        "W1_p50_ms": 50.5,
        "W1_p99_ms": 99.0,
        "W2_batch_tasks_per_s": 500.0,
        "W4_p50_ms": 20.0,
        "W2_per_request_tasks_per_s": 300.0,
    }
    without_http = sidebyside.round_figures(w1, {"tasks_per_s": 500}, None, [0.02])
    assert "W2_per_request_tasks_per_s" not in without_http
    latency_only = sidebyside.round_figures(w1, None, None, [0.02])  # the floor
    assert set(latency_only) == {"W1_p50_ms", "W1_p99_ms", "W4_p50_ms"}
    with_cpu = sidebyside.round_figures(w1, None, None, [0.02], w1_cpu_s=0.35)
    assert with_cpu["W1_cpu_ms_per_call"] == 3.5  # 350 ms over 100 calls
    rounds = [{"a": 1.0, "b": 5.0}, {"a": 3.0, "b": 1.0}, {"a": 2.0}]
    assert sidebyside.medians(rounds) == {"a": 2.0}  # only what every round has


def test_ratios_are_ours_over_theirs_for_shared_figures() -> None:
    ours = {"W1_p50_ms": 3.0, "W2_batch_tasks_per_s": 2000.0, "W2_per_request_tasks_per_s": 1.0}
    theirs = {"W1_p50_ms": 2.0, "W2_batch_tasks_per_s": 0.0}
    assert sidebyside.ratios(ours, theirs) == {"W1_p50_ms": 1.5, "W2_batch_tasks_per_s": None}


def test_summary_has_ratios_per_mode_for_baselines_and_the_ref() -> None:
    medians = {
        "this/local": {"W1_p50_ms": 2.0, "W4_p50_ms": 30.0},
        "this/pull": {"W1_p50_ms": 4.0, "W4_p50_ms": 30.0},
        "main/local": {"W1_p50_ms": 2.0, "W4_p50_ms": 60.0},
        "main/pull": {"W1_p50_ms": 2.0, "W4_p50_ms": 30.0},
        "ray": {"W1_p50_ms": 1.0, "W4_p50_ms": 15.0},
    }
    summary = sidebyside.summarize(medians, ["local", "pull"], ["ray", "celery"], "main")
    # celery was asked for but did not run (not installed): no ratio, no error
    assert summary["ours_over_baselines"] == {
        "local": {"ray": {"W1_p50_ms": 2.0, "W4_p50_ms": 2.0}},
        "pull": {"ray": {"W1_p50_ms": 4.0, "W4_p50_ms": 2.0}},
    }
    assert summary["this_over_main"] == {
        "local": {"W1_p50_ms": 1.0, "W4_p50_ms": 0.5},
        "pull": {"W1_p50_ms": 2.0, "W4_p50_ms": 1.0},
    }
    assert sidebyside.summarize(medians, ["local"], [], None) == {}


def test_result_files_are_named_by_modes_and_what_they_are_against() -> None:
    assert sidebyside.file_stem(["local", "pull"], ["ray", "celery"], None) == (
        "local-pull-vs-ray-celery"
    )
    assert sidebyside.file_stem(["local"], [], "origin/main") == "local-vs-origin_main"


def test_port_ranges() -> None:
    assert parse_range("19200-19299") == range(19200, 19300)
    for bad in ("19200", "a-b", "19300-19200", "80-90"):
        with pytest.raises(ValueError):
            parse_range(bad)


def test_ports_from_a_range_skip_taken_ones_and_are_never_handed_out_twice() -> None:
    allowed = parse_range("19280-19299")
    busy: socket.socket | None = socket.socket()
    try:
        busy.bind(("127.0.0.1", allowed.start))  # the range's first port is taken
    except OSError:
        busy.close()
        busy = None  # already taken by someone else: as good
    try:
        ports = Ports(allowed)
        first = ports.take()
        block = ports.take_block(3)
    finally:
        if busy is not None:
            busy.close()
    assert first != allowed.start and first in allowed
    assert block.start > first and block[-1] in allowed and len(block) == 3
    with pytest.raises(RuntimeError, match="no 30 free ports"):
        ports.take_block(30)
    assert Ports().take() > 0
    with pytest.raises(ValueError, match="needs a range"):
        Ports().take_block(2)


SIDE = textwrap.dedent(
    """
    from bench.side import serve

    def boom():
        raise KeyError("x")

    print("library chatter")  # goes to stderr, not into the answers
    serve({"add": lambda a, b: a + b, "boom": boom}, ready={"version": "1"})
    """
)


def test_a_side_answers_commands_reports_errors_and_stops_when_stdin_closes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    side = Side("toy", [sys.executable, "-c", SIDE], ROOT, tmp_path / "toy.log")
    try:
        assert side.info == {"ready": True, "version": "1"}
        assert side.call("add", a=2, b=3) == 5
        with pytest.raises(RuntimeError, match="toy: boom: KeyError"):
            side.call("boom")
        assert side.call("add", a=1, b=1) == 2
    finally:
        side.close(timeout_s=10)
    assert side.proc.returncode == 0
    assert "library chatter" in (tmp_path / "toy.log").read_text()


def test_a_side_that_dies_at_start_shows_its_log(tmp_path) -> None:  # type: ignore[no-untyped-def]
    argv = [sys.executable, "-c", "import sys; sys.exit('ray: no luck')"]
    with pytest.raises(RuntimeError, match="no luck"):
        Side("dead", argv, ROOT, tmp_path / "dead.log")


BURNER = (
    "import subprocess, sys; "
    "p = subprocess.Popen([sys.executable, '-c', 'sum(range(30_000_000)); input()'], "
    "stdin=subprocess.PIPE); print(p.pid, flush=True); p.wait()"
)


def test_cpu_of_a_process_tree_counts_descendants_once() -> None:
    child = subprocess.Popen([sys.executable, "-c", BURNER], stdout=subprocess.PIPE,
                             start_new_session=True)  # fmt: skip
    try:
        assert child.stdout is not None
        grandchild = int(child.stdout.readline())
        deadline = time.monotonic() + 60
        while (both := cpu_by_tree({"child": child.pid, "grand": grandchild}))["grand"] < 0.2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        alone = cpu_by_tree({"child": child.pid})["child"]
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
    assert both["child"] < both["grand"]  # a listed descendant counts for itself only
    assert alone >= both["child"] + both["grand"]  # unlisted, it counts for its ancestor


def test_cpu_by_role_names_each_process_by_its_part(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The root is the side; under it a module with a --role, inline code, a program.
    (tmp_path / "burner.py").write_text("sum(range(20_000_000))\ninput()\n")
    tree = (
        "import subprocess, sys, time; "
        "kids = [subprocess.Popen([sys.executable, '-m', 'burner', '--role', 'gateway']), "
        "subprocess.Popen([sys.executable, '-c', 'input()']), "
        "subprocess.Popen(['sleep', '60'])]; "
        "print(' '.join(str(k.pid) for k in kids), flush=True); time.sleep(60)"
    )
    side = subprocess.Popen([sys.executable, "-c", tree], stdout=subprocess.PIPE, cwd=tmp_path,
                            stdin=subprocess.PIPE, start_new_session=True)  # fmt: skip
    try:
        assert side.stdout is not None
        kids = [int(pid) for pid in side.stdout.readline().split()]
        # Popen returns once exec closed its pipe, a moment before the new command line is
        # set up: until then /proc shows an empty one ("?").
        deadline = time.monotonic() + 60
        while (roles := [proc.role(pid) for pid in kids]).count("?"):
            assert time.monotonic() < deadline, roles
            time.sleep(0.01)
        assert roles[1:] == ["python -c", "sleep"]
        while (used := proc.cpu_by_role(side.pid)).get("burner gateway", 0.0) < 0.1:
            assert time.monotonic() < deadline, used
            time.sleep(0.05)
        assert set(used) == {"side", "burner gateway", "python -c", "sleep"}
    finally:
        os.killpg(side.pid, signal.SIGKILL)
        side.communicate()


def test_the_arguments_of_baselines_and_compare() -> None:
    args = build_parser().parse_args(
        ["--modes", "local,pull", "--baselines", "ray,celery", "--compare", "main",
         "--rounds", "3", "--w4", "10", "--ports", "19200-19299"]
    )  # fmt: skip
    assert (args.baselines, args.compare, args.rounds, args.w4) == ("ray,celery", "main", 3, 10)
    assert args.ports == "19200-19299"
    defaults = build_parser().parse_args([])
    assert (defaults.baselines, defaults.compare, defaults.w1, defaults.w2) == (
        None, None, 1000, 2000,
    )  # fmt: skip


def test_bench_help_runs_and_names_the_new_options() -> None:
    out = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "--baselines" in out.stdout and "--compare" in out.stdout


def test_the_plot_has_every_system(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("matplotlib")
    from bench import plots

    report = {
        "command": "python -m bench --baselines ray",
        "date": "2026-12-02T00:00:00+00:00",
        "machine": {"cpus": 2},
        "settings": {"w2": 2000},
        "samples_ms": {"this/local": {"W1": [2.0, 3.0], "W4": [30.0]},
                       "ray": {"W1": [1.0, 2.0], "W4": [15.0, 16.0]},
                       "floor": {"W1": [1.5], "W4": [20.0]}},
        "medians": {"this/local": {"W2_batch_tasks_per_s": 2000.0,
                                   "W2_per_request_tasks_per_s": 1300.0},
                    "ray": {"W2_batch_tasks_per_s": 1500.0},
                    "floor": {"W1_p50_ms": 1.5}},  # no W2: no bar
    }  # fmt: skip
    path = plots.side_by_side(report, tmp_path / "x.png")
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"
