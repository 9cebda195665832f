"""/docs: Swagger UI served entirely by allot, used in a real headless browser.

The browser (Debian's chromium, driven by playwright) loads the page under its strict CSP,
authorizes with a token from `allot token` and executes GET /resource_classes, as the README's
quickstart tells a new user to do. Nothing may be fetched from anywhere but allot itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.api.test_cli import serving, token
from tests.conftest import make_client
from tests.conftest import test_settings as settings_for

CHROMIUM = Path("/usr/bin/chromium")
PORT = 8560

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and os.environ.get("CI") != "true",
    reason="needs Debian's chromium (`make browser`); CI installs it and never skips",
)


async def test_docs_page_has_a_strict_csp_and_local_assets() -> None:
    from app.main import create_app

    application = create_app(settings_for("sqlite+aiosqlite://"))
    async with make_client(application, {}) as c:  # /docs needs no database
        page = await c.get("/docs")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "http" not in csp  # no other origin is trusted
        assert "cdn" not in page.text.lower() and "https://" not in page.text
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "allot-init.js"):
            assert (await c.get(f"/docs/static/{asset}")).status_code == 200, asset


async def _execute(page: Any, method: str, path: str, body: str | None = None) -> str:
    """Try an operation out in Swagger UI at `placement latest`; the status it shows."""
    operation = page.locator(
        f".opblock-{method}:has(.opblock-summary-path[data-path='{path}'])"
    ).first
    await operation.locator(".opblock-summary").click()
    await operation.locator("button.try-out__btn").click()
    await operation.locator("tr[data-param-name='OpenStack-API-Version'] input").fill(
        "placement latest"
    )
    if body is not None:
        await operation.locator("textarea.body-param__text").fill(body)
    await operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    await status.wait_for(timeout=30_000)
    return (await status.inner_text()).strip()


async def test_swagger_ui_authorizes_and_executes_a_call(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    with serving(tmp_path, PORT) as (base, _process):
        admin = token(tmp_path, "--project", "ops", "--user", "me", "--roles", "admin")
        httpx.post(
            f"{base}/resource_classes",
            json={"name": "CUSTOM_FROM_CURL"},
            headers={
                "authorization": f"Bearer {admin}",
                "openstack-api-version": "placement latest",
            },
        ).raise_for_status()
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=str(CHROMIUM),
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--no-first-run",
                ],
            )
            try:
                page = await browser.new_page()
                hosts: set[str] = set()
                problems: list[str] = []
                page.on("request", lambda r: hosts.add(urlsplit(r.url).netloc))
                page.on(
                    "console",
                    lambda m: problems.append(m.text) if m.type == "error" else None,
                )
                await page.goto(f"{base}/docs")
                await page.locator(".swagger-ui .info .title").wait_for(timeout=30_000)

                await page.locator("button.authorize").first.click()
                await page.locator(".modal-ux input").first.fill(admin)
                await page.locator(".modal-ux button.authorize").click()
                await page.locator(".modal-ux button.btn-done").click()

                # The README's quickstart, literally: create a class, then list it.
                created = await _execute(
                    page, "post", "/resource_classes", body='{"name": "CUSTOM_GPU"}'
                )
                assert created == "201"
                listed = await _execute(page, "get", "/resource_classes")
                assert listed == "200"
                shown = page.locator(
                    ".opblock-get:has(.opblock-summary-path[data-path='/resource_classes'])"
                    " .live-responses-table .microlight"
                ).first
                body = await shown.inner_text()
                assert "CUSTOM_GPU" in body and "CUSTOM_FROM_CURL" in body and "VCPU" in body
            finally:
                await browser.close()
        assert hosts == {f"127.0.0.1:{PORT}"}  # no CDN, nothing from elsewhere
        assert not [p for p in problems if "Content Security Policy" in p], problems
