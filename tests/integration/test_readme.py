"""The README's quickstarts run as written, against a real platform. Only the
address changes: the examples say port 8000, the test platform has its own."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from faas.platform import LocalPlatform
from tests.conftest import deserialize

README = Path(__file__).parents[2] / "README.md"


def block(heading: str, language: str) -> str:
    """The first ```language block after the line `heading`."""
    text = README.read_text()
    start = text.index(f"\n{heading}\n")
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, start)
    assert match, f"no {language} block after {heading!r}"
    return match.group(1)


def test_the_sdk_quickstart_runs(platform: LocalPlatform) -> None:
    code = block("## Quickstart with the SDK", "python")
    code = code.replace("http://127.0.0.1:8000", platform.url)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(not shutil.which("jq"), reason="the curl quickstart needs jq")
def test_the_curl_quickstart_runs_verbatim(platform: LocalPlatform) -> None:
    script = block("## Quickstart with curl (the course-compatible API)", "bash")
    script = script.replace("localhost:8000", platform.url.removeprefix("http://"))
    venv_bin = str(Path(sys.executable).parent)  # `python` there has dill
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = done.stdout.strip().splitlines()[-1]
    assert '"status":"COMPLETED"' in answer.replace(" ", ""), answer
    result = re.search(r'"result":\s*"([^"]+)"', answer)
    assert result and deserialize(result.group(1).encode().decode("unicode_escape")) == 42
