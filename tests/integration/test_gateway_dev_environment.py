"""The `[dev]` environment runs any pytest, not only ours: a plugin one of its
packages auto-loads (kmock's) must find its own dependencies. (Kept with the
gateway's tests by file ownership; it guards pyproject.toml's dev extra.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_an_outside_test_file_runs_with_the_dev_environment(tmp_path: Path) -> None:
    (tmp_path / "test_outside.py").write_text("def test_ok():\n    assert 1 + 1 == 2\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_outside.py"],
        cwd=tmp_path,  # outside the repo: none of our pytest configuration applies
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_hypothesis_is_in_the_dev_environment() -> None:
    import hypothesis

    assert hypothesis.__version__
