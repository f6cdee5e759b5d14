"""hack/lib.sh installs the project only when pyproject.toml or the extras changed.
Run on a copy of the scripts whose `.venv/bin/python` only logs how it is called."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ensure_venv_installs_only_when_something_changed(tmp_path: Path) -> None:
    (tmp_path / "hack").mkdir()
    shutil.copy(ROOT / "hack" / "lib.sh", tmp_path / "hack" / "lib.sh")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    calls = tmp_path / "calls"
    python.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    python.chmod(0o755)

    def installs(*extras: str) -> list[str]:
        """The pip runs of ensure_venv with each of `extras` in turn."""
        calls.unlink(missing_ok=True)
        script = "; ".join(f'ensure_venv "{e}"' for e in extras)
        subprocess.run(["bash", "-c", f"source hack/lib.sh; {script}"], cwd=tmp_path,
                       check=True, capture_output=True, timeout=30)  # fmt: skip
        return (
            [line.split()[-1] for line in calls.read_text().splitlines()] if calls.exists() else []
        )

    assert installs("", "") == [str(tmp_path)]
    assert installs("[dev]", "[dev]", "") == [f"{tmp_path}[dev]"]  # [dev] includes the base
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "2"\n')
    assert installs("", "[dev]", "", "[dev]") == [str(tmp_path), f"{tmp_path}[dev]"]
