"""The pages a browser opens: the dashboard at `/` and the API docs at `/docs` and
`/redoc`, every asset served from the package (no CDN: they work offline).

The pages and their assets hold no data, so they load without the API key (see
`gateway.auth.PUBLIC_PREFIXES`); what they show comes from /v1 calls that need it
(the dashboard asks for the key and keeps it in the tab). The docs pages stay behind
the key like the OpenAPI document they render."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

DASHBOARD_DIR = Path(str(resources.files("gateway").joinpath("static")))
DOCS_ASSETS_DIR = Path(str(resources.files("fastapi_offline").joinpath("static")))


def add_pages(app: FastAPI) -> None:
    """Mount the dashboard and the offline docs on an app created with
    `docs_url=None, redoc_url=None`."""
    app.mount("/ui/docs", StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")
    app.mount("/ui", StaticFiles(directory=DASHBOARD_DIR), name="dashboard")
    title = app.title

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(DASHBOARD_DIR / "index.html")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{title}: API",
            swagger_js_url="/ui/docs/swagger-ui-bundle.js",
            swagger_css_url="/ui/docs/swagger-ui.css",
            swagger_favicon_url="/ui/docs/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{title}: API",
            redoc_js_url="/ui/docs/redoc.standalone.js",
            redoc_favicon_url="/ui/docs/favicon.png",
            with_google_fonts=False,
        )
