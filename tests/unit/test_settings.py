"""Settings: production needs a key and hides the docs; nothing secret has a default."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from app.main import create_app
from app.settings import Settings

SECRET = "a-production-secret-of-enough-length-0123456789"


def test_production_refuses_to_start_without_a_key_source() -> None:
    with pytest.raises(ValidationError, match="ALLOT_AUTH_JWT_SECRET"):
        Settings(env="production")


def test_no_secret_has_a_default() -> None:
    settings = Settings()
    assert settings.auth_jwt_secret is None and not settings.has_key_source
    assert SECRET not in repr(Settings(auth_jwt_secret=SECRET))  # never printed either


@pytest.mark.parametrize(
    ("env", "docs_enabled", "served"),
    [
        ("development", None, True),
        ("production", None, False),
        ("production", True, True),
        ("development", False, False),
    ],
)
async def test_docs_are_off_in_production_unless_asked(
    env: str, docs_enabled: bool | None, served: bool
) -> None:
    settings = Settings(
        env=env,  # type: ignore[arg-type]
        auth_jwt_secret=SECRET,
        docs_enabled=docs_enabled,
        database_url="sqlite+aiosqlite://",
    )
    application = create_app(settings)
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://allot.test") as c:
        for path in ("/docs", "/openapi.json"):
            assert ((await c.get(path)).status_code == 200) is served, path
