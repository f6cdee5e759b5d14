"""The SDK ships what a function needs: the caller's own modules by value, pip
requirements and py_modules bundles. The workers here have none of that code."""

from __future__ import annotations

import base64
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from common.models import DispatchMode
from faas import Client
from faas.platform import LocalPlatform
from tests.conftest import make_platform
from tests.wheelhouse import make_wheel


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    tmp = tmp_path_factory.mktemp("sdk-code")
    wheels = tmp / "wheels"
    make_wheel(wheels, "faas_sdkpkg", "3.1")
    env = {"FAAS_ENV_DIR": str(tmp / "envs"), "FAAS_PIP_NO_INDEX": "true",
           "FAAS_PIP_FIND_LINKS": str(wheels)}  # fmt: skip
    with make_platform(tmp, DispatchMode.PULL, workers=1, slots=2, env=env) as running:
        yield running


def run_client(platform: LocalPlatform, project: Path, code: str) -> str:
    """Run `code` in a fresh interpreter whose cwd (and path) is the user's project."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), platform.url],
        cwd=project, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_callers_own_modules_travel_by_value(platform: LocalPlatform, tmp_path: Path) -> None:
    # A project the workers have never seen: a module using a helper module
    (tmp_path / "helpers.py").write_text("def triple(x):\n    return 3 * x\n")
    (tmp_path / "webservice.py").write_text(
        "import helpers\n\ndef double_then_triple(x):\n    return helpers.triple(2 * x)\n"
    )
    out = run_client(
        platform, tmp_path,
        """
        import sys
        from faas import Client
        from webservice import double_then_triple
        print(Client(sys.argv[1]).register(double_then_triple)(7))
        """,
    )  # fmt: skip
    assert out == "42"


def test_requirements_and_py_modules_reach_the_workers(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    package = tmp_path / "shapes"
    package.mkdir()
    (package / "__init__.py").write_text("SIDES = {'square': 4}\n")

    def probe(kind: str) -> tuple[str, int]:
        import faas_sdkpkg  # installed by the worker from `requirements`
        import shapes  # shipped in `py_modules`

        return faas_sdkpkg.VERSION, shapes.SIDES[kind]

    with Client(platform.url) as client:
        remote = client.register(probe, requirements=["faas_sdkpkg==3.1"], py_modules=[package])
        assert remote("square") == ("3.1", 4)


def test_a_module_the_workers_lack_is_a_warning_then_a_dependency_error(
    platform: LocalPlatform,
) -> None:
    # json.dumps pickled by reference is fine; a by-reference module nobody has is not.
    by_reference = b"\x80\x04\x8c\x0emy_private_lib\x94\x8c\x01f\x94\x93\x94."
    body = {"name": "f", "payload": base64.b64encode(by_reference).decode()}
    with httpx.Client(base_url=platform.url) as http:
        answer = http.post("/v1/functions", json=body).json()
        assert "'my_private_lib'" in answer["warnings"][0]
        task = http.post("/v1/tasks?wait=30", json={
            "function_id": answer["function_id"],
            "payload": base64.b64encode(pickle.dumps(((), {}))).decode(),
        }).json()  # fmt: skip
    assert task["status"] == "FAILED" and task["error_kind"] == "dependency"
    assert "my_private_lib" in task["error"] and "SDK" in task["error"]


def test_remote_tracebacks_show_the_users_file_line_and_source(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    # A script (its functions travel in __main__) and a module it imports (shipped by
    # value); both files are deleted after registering, so no worker can read them.
    (tmp_path / "shapes.py").write_text(
        "def area(side):\n    if side < 0:\n        raise ValueError(f'negative side {side}')\n"
        "    return side * side\n"
    )
    script = tmp_path / "userscript.py"
    script.write_text(
        textwrap.dedent(
            """\
            import os, sys
            from faas import Client
            import shapes

            def check(x):
                return 1 / x  # line 6

            def via_module(x):
                return shapes.area(x)

            client = Client(sys.argv[1])
            check_remote = client.register(check)
            module_remote = client.register(via_module)
            os.remove(__file__)
            os.remove(shapes.__file__)
            for remote, arg in ((check_remote, 0), (module_remote, -2)):
                try:
                    remote(arg)
                except Exception as exc:
                    print("\\n".join(exc.__notes__))
                    print("=====")
            """
        )
    )
    done = subprocess.run([sys.executable, str(script), platform.url], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    direct, via_module, _ = done.stdout.split("=====\n")
    assert f'File "{script}", line 6, in check' in direct, direct
    assert "return 1 / x  # line 6" in direct and "ZeroDivisionError" in direct
    shapes = tmp_path / "shapes.py"
    assert f'File "{shapes}", line 3, in area' in via_module, via_module
    assert "raise ValueError(f'negative side {side}')" in via_module
    assert f'File "{script}", line 9, in via_module' in via_module
    assert "return shapes.area(x)" in via_module
    for text in (direct, via_module):
        assert "worker/" not in text and "dill" not in text and "slot.py" not in text, text
