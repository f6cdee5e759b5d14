"""Which modules the SDK ships by value."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from faas.modules import is_user_module, user_modules


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A user's project: app.py uses helpers.py and an installed package (json)."""
    (tmp_path / "helpers.py").write_text("def triple(x):\n    return 3 * x\n")
    (tmp_path / "shapes.py").write_text(
        "class Square:\n    def area(self, s):\n        return s * s\n"
    )
    (tmp_path / "app.py").write_text(
        textwrap.dedent(
            """
            import json
            import helpers
            from shapes import Square

            def handler(x):
                return json.dumps(helpers.triple(x)), Square().area(x)

            def outer():
                import helpers as h
                def inner(x):
                    return h.triple(x)
                return inner
            """
        )
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in ("app", "helpers", "shapes"):
            sys.modules.pop(name, None)


def test_a_function_ships_its_module_and_the_user_modules_it_uses(project: Path) -> None:
    app = importlib.import_module("app")
    names = [m.__name__ for m in user_modules(app.handler)]
    assert names[0] == "app"
    assert set(names) == {"app", "helpers", "shapes"}


def test_modules_in_a_closure_are_found(project: Path) -> None:
    app = importlib.import_module("app")
    assert {m.__name__ for m in user_modules(app.outer())} == {"app", "helpers"}


def test_installed_and_standard_modules_stay_by_reference() -> None:
    import json

    import httpx

    assert not is_user_module(json)
    assert not is_user_module(httpx)
    assert not is_user_module(sys)
    assert user_modules(json.dumps) == []
