"""What user code can see from inside a slot."""

from __future__ import annotations

import httpx
import userfuncs

from tests.conftest import deserialize, execute, register, wait_result


def test_a_slot_environment_holds_no_platform_settings_or_secrets(http: httpx.Client) -> None:
    seen = deserialize(
        wait_result(http, execute(http, register(http, userfuncs.environment)))["result"]
    )
    leaked = sorted(name for name in seen if name.startswith(("FAAS_", "REDIS")))
    assert not leaked, f"slots see {leaked}"
    assert "PATH" in seen and "PYTHONPATH" in seen  # what functions legitimately need stays
