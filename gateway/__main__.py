"""`python -m gateway [--host H] [--port P] [--workers N]` (also `faas-gateway`)."""

from __future__ import annotations

import argparse
import os

import uvicorn

from common.hardening import protect_process
from common.logs import configure_logging
from gateway.auth import api_keys
from gateway.settings import GatewaySettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="faas-gateway", description="Serve the faas REST API.")
    parser.add_argument(
        "--host", dest="gateway_host", help="default 127.0.0.1; 0.0.0.0 to listen on all addresses"
    )
    parser.add_argument("--port", type=int, dest="gateway_port", help="default 8000")
    parser.add_argument("--workers", type=int, dest="gateway_workers", help="server processes")
    parser.add_argument("--redis-url", help="default redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    settings = GatewaySettings(**overrides)
    try:  # a bad keys file stops the gateway here, in one line, not in each server process
        api_keys(settings)
    except (OSError, ValueError) as exc:
        parser.exit(2, f"faas-gateway: API keys: {exc}\n")
    configure_logging(settings.log_level, json_lines=settings.log_json)
    protect_process()  # user code must not read our environment from /proc
    if settings.gateway_workers > 1:
        # Each server process builds its own app from the environment.
        for key, value in overrides.items():
            os.environ[f"FAAS_{key.upper()}"] = str(value)
        app: object = "gateway.app:create_app"
    else:
        from gateway.app import create_app

        app = create_app(settings)
    uvicorn.run(
        app,
        factory=settings.gateway_workers > 1,
        host=settings.gateway_host,
        port=settings.gateway_port,
        workers=settings.gateway_workers,
        loop="uvloop",
        http="gateway.protocol:TimedHttpProtocol",  # httptools, with slow clients timed out
        timeout_keep_alive=settings.keep_alive_timeout_s,
        access_log=False,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
