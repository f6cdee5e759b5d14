"""The README's local-use examples, run as written against a real platform (its
address substituted for 127.0.0.1:8000), in real subprocesses: the SDK quickstart,
the curl quickstart and the CLI example. A comment `# VALUE: ...` after a Python
expression in the README is checked as its expected value."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.models import DispatchMode
from faas.client import loads
from faas.platform import LocalPlatform
from tests.conftest import make_platform

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
VENV_BIN = str(Path(sys.executable).parent)  # where `faas` and a `python` with dill are


def block(heading: str, language: str, index: int = 0) -> str:
    """The index-th ```language block of the README section under `heading`."""
    section = README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)
    return blocks[index]


def with_checks(code: str) -> str:
    """`expr  # 49: text` becomes `assert (expr) == 49`."""
    lines = []
    for line in code.splitlines():
        statement, _, comment = line.partition("  # ")
        expected = comment.split(":", 1)[0]
        try:
            ast.literal_eval(expected)
            is_expression = isinstance(ast.parse(statement.strip()).body[0], ast.Expr)
        except (ValueError, SyntaxError, IndexError):
            lines.append(line)
            continue
        if is_expression:
            line = f"assert ({statement.strip()}) == {expected}, {statement.strip()!r}"
        lines.append(line)
    return "\n".join(lines)


def local_address(text: str, platform: LocalPlatform) -> str:
    address = platform.url.removeprefix("http://")
    return text.replace("127.0.0.1:8000", address).replace("localhost:8000", address)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    with make_platform(tmp_path_factory.mktemp("readme"), DispatchMode.LOCAL) as platform:
        yield platform


def run(argv: list[str], cwd: Path, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "FAAS_URL": url}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_sdk_quickstart(running: LocalPlatform, tmp_path: Path) -> None:
    code = with_checks(local_address(block("Quickstart with the SDK", "python"), running))
    assert code.count("assert") >= 3  # the README's expected values are checked
    done = run([sys.executable, "-c", code], tmp_path, running.url)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl, jq")
def test_the_curl_quickstart(running: LocalPlatform, tmp_path: Path) -> None:
    script = local_address(
        block("Quickstart with curl (the course-compatible API)", "bash"), running
    )
    done = run(["bash", "-euo", "pipefail", "-c", script], tmp_path, running.url)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["status"] == "COMPLETED" and loads(answer["result"]) == 42


@pytest.mark.skipif(not shutil.which("jq"), reason="needs jq")
def test_the_cli_example(running: LocalPlatform, tmp_path: Path) -> None:
    script = block("The CLI", "bash", index=1)
    done = run(["bash", "-euo", "pipefail", "-c", script], tmp_path, running.url)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[:2] == ["27", "16"] and out[-1] == "power", done.stdout
    assert any(line.startswith("status    COMPLETED") for line in out), done.stdout


@pytest.mark.skipif(not shutil.which("jq"), reason="needs jq")
def test_the_see_your_work_example(running: LocalPlatform, tmp_path: Path) -> None:
    cli_example = block("The CLI", "bash", index=1)
    source = re.search(r"<<'EOF'\n(.*?)\nEOF\n", cli_example, flags=re.S)
    assert source is not None
    (tmp_path / "mathfns.py").write_text(source.group(1))
    script = block("See your work", "bash")
    done = run(["bash", "-euo", "pipefail", "-c", script], tmp_path, running.url)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[1] == "1024", done.stdout
    assert any("COMPLETED" in line for line in out[2:5]), done.stdout
    assert any("busy" in line for line in out), done.stdout
    assert any(line.startswith("queued ") for line in out), done.stdout


@pytest.mark.skipif(not shutil.which("jq"), reason="needs jq")
def test_the_tenants_example(tmp_path: Path) -> None:
    """Keys made as the README says, a gateway started on their file, then alice's
    function is hers: bob's key gets 'not found'."""
    make_keys = run(["bash", "-euo", "pipefail", "-c", block("Tenants and API keys", "bash")],
                    tmp_path, "unused")  # fmt: skip
    assert make_keys.returncode == 0, make_keys.stderr
    env = {"FAAS_API_KEYS_FILE": str(tmp_path / "api-keys")}
    with make_platform(tmp_path / "platform", DispatchMode.LOCAL, slots=2, env=env) as platform:
        script = block("Tenants and API keys", "bash", index=1)
        done = run(["bash", "-euo", "pipefail", "-c", script], tmp_path, platform.url)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0].isdigit() and out[-1] == "bob: no such function", done.stdout
    assert "not found" in done.stderr, done.stderr


def test_the_sdk_sections_futures_and_nested_calls(running: LocalPlatform, tmp_path: Path) -> None:
    blocks = [block("Quickstart with the SDK", "python", i) for i in range(3)]
    code = with_checks(local_address("\n".join(blocks), running))
    assert "assert (total.result()) == 285" in code and "assert (parent(10)) == 285" in code
    assert "assert (fused(10)) == 285" in code
    done = run([sys.executable, "-c", code], tmp_path, running.url)
    assert done.returncode == 0, done.stderr
