"""Swagger UI at /docs, served entirely by allot (no CDN), under a strict CSP.

The assets (Swagger UI 5, which reads OpenAPI 3.1) come from the `fastapi-offline` package;
only its static files are used.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"

STATIC = "/docs/static"
_INIT = f"{STATIC}/allot-init.js"
# The page's script runs from our own origin; the inline init FastAPI generates is replaced.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_INIT_JS = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    persistAuthorization: true,
    presets: [SwaggerUIBundle.presets.apis],
  });
};
"""


def _page() -> str:
    rendered = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="allot - Swagger UI",
        swagger_js_url=f"{STATIC}/swagger-ui-bundle.js",
        swagger_css_url=f"{STATIC}/swagger-ui.css",
        swagger_favicon_url=f"{STATIC}/favicon.png",
    ).body
    html = bytes(rendered).decode()
    # Drop FastAPI's inline <script> block (a strict CSP forbids it) and load ours.
    start = html.rfind("<script>")
    end = html.find("</script>", start) + len("</script>")
    return html[:start] + f'<script src="{_INIT}"></script>' + html[end:]


def install(app: FastAPI) -> None:
    page = _page()

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(page, headers={"content-security-policy": _CSP})

    @app.get(_INIT, include_in_schema=False)
    async def swagger_init() -> Response:
        return Response(_INIT_JS, media_type="application/javascript")

    app.mount(STATIC, StaticFiles(directory=ASSETS), name="swagger-static")
