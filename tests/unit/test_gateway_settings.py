"""Gateway defaults that matter for safety."""

from __future__ import annotations

import pytest

from gateway.settings import GatewaySettings


def test_the_gateway_listens_on_this_machine_only_unless_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FAAS_GATEWAY_HOST", raising=False)
    assert GatewaySettings().gateway_host == "127.0.0.1"
    monkeypatch.setenv("FAAS_GATEWAY_HOST", "0.0.0.0")
    assert GatewaySettings().gateway_host == "0.0.0.0"
