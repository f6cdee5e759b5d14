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


def test_abuse_limits_have_bounded_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MAX_WAIT_IDS", "MAX_PICKLE_OPCODES", "HEADER_TIMEOUT_S", "BODY_IDLE_TIMEOUT_S"):
        monkeypatch.delenv(f"FAAS_{name}", raising=False)
    settings = GatewaySettings()
    assert settings.max_wait_ids == 10_000
    assert settings.max_pickle_opcodes == 2_000_000
    assert 0 < settings.header_timeout_s <= 30
    assert 0 < settings.keep_alive_timeout_s <= 30
    assert 0 < settings.body_idle_timeout_s <= 120
