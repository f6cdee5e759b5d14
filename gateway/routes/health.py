from __future__ import annotations

from fastapi import APIRouter, Request

from common.errors import StoreUnavailable
from gateway.routes import FastJSON

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> FastJSON:
    """The process is up."""
    return FastJSON({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> FastJSON:
    """Redis answers and the completion subscription is live: requests can be served."""
    try:
        await request.app.state.service.store.ping()
    except StoreUnavailable as exc:
        return FastJSON({"status": "unavailable", "detail": str(exc)}, status_code=503)
    if not request.app.state.hub.subscribed.is_set():
        return FastJSON({"status": "unavailable", "detail": "not subscribed"}, status_code=503)
    return FastJSON({"status": "ready"})
