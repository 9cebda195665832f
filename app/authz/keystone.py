"""Keystone tokens: validated by Keystone's Identity v3 API with allot's own service credentials.

`GET /v3/auth/tokens` with the caller's token in `X-Subject-Token` and allot's in
`X-Auth-Token`, as keystonemiddleware does for Placement. allot's token is a project-scoped
token for its service user (the `service` role is enough under Keystone's default policy),
obtained on first need, renewed before it expires and whenever Keystone refuses it.

Every call is asynchronous (httpx), over reused connections, with a bounded timeout. Keystone
failing in any way raises IdentityUnavailable, never InvalidToken: an outage must not look like
wrong credentials to the client.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from pydantic import BaseModel, ValidationError

from app.authz.subjects import IdentityUnavailable, InvalidToken, Subject
from app.authz.token_cache import Admit, TokenCache, Validated
from app.observability import KEYSTONE_FAILURES, KEYSTONE_LATENCY, KEYSTONE_VALIDATIONS
from app.settings import ConfigurationError, Settings

log = logging.getLogger("allot.auth.keystone")

# Fernet tokens are about 200 characters, JWS tokens under 1,000, PKI tokens of old a few KiB:
# anything longer, or outside the token alphabet, is not sent to Keystone at all.
MAX_TOKEN_LENGTH = 8192
_TOKEN_RE = re.compile(r"[A-Za-z0-9._~+/=-]+")
# allot's own token is renewed when a quarter of its life is left, or five minutes if that is
# less, so validations never go out with a token about to lapse.
_RENEW_FRACTION = 0.25
_RENEW_MARGIN_MAX_S = 300.0


class _Ref(BaseModel):
    id: str


class _Role(BaseModel):
    name: str


class _Token(BaseModel):
    user: _Ref
    expires_at: datetime
    project: _Ref | None = None
    domain: _Ref | None = None
    system: dict[str, bool] | None = None
    roles: list[_Role] = []


class _TokenDocument(BaseModel):
    token: _Token


@dataclass(frozen=True)
class _ServiceToken:
    value: str
    renew_at: float


def subject_of(token: _Token) -> Subject:
    """Keystone's view of a token as allot's Subject."""
    domain_scoped = token.domain is not None and token.project is None
    return Subject(
        user_id=token.user.id[:255],
        project_id=token.project.id[:255] if token.project else None,
        roles=frozenset(role.name.lower() for role in token.roles),
        system=bool(token.system and token.system.get("all")),
        domain_id=token.domain.id[:255] if domain_scoped and token.domain else None,
    )


def _password(settings: Settings) -> str:
    if settings.auth_keystone_password_file:
        try:
            return Path(settings.auth_keystone_password_file).read_text().strip()
        except OSError:
            raise ConfigurationError("ALLOT_AUTH_KEYSTONE_PASSWORD_FILE is not readable") from None
    return settings.auth_keystone_password or ""


def _tls(settings: Settings) -> ssl.SSLContext | bool:
    if settings.auth_keystone_ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(settings.auth_keystone_ca_file))
    except (OSError, ssl.SSLError):
        raise ConfigurationError(
            "ALLOT_AUTH_KEYSTONE_CA_FILE is not a readable CA bundle"
        ) from None


class KeystoneAuthenticator:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        assert settings.auth_keystone_url
        self.url = settings.auth_keystone_url
        self._settings = settings
        self._password = _password(settings)
        self._clock = clock
        self._client = httpx.AsyncClient(
            base_url=self.url,
            timeout=settings.auth_keystone_timeout,
            verify=_tls(settings),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            headers={"User-Agent": "allot", "Accept": "application/json"},
        )
        self._service_token: _ServiceToken | None = None
        self._renewal = asyncio.Lock()
        self.cache = TokenCache(
            settings.auth_keystone_cache_size, settings.auth_keystone_cache_seconds, clock
        )

    async def subject(self, token: str, admit: Admit | None = None) -> Subject:
        """The token's subject; `admit` may refuse a call to Keystone (it raises)."""
        if len(token) > MAX_TOKEN_LENGTH or not _TOKEN_RE.fullmatch(token):
            raise InvalidToken("not a token Keystone could have issued")
        return await self.cache.subject(token, self._validate, admit)

    async def close(self) -> None:
        await self._client.aclose()

    async def _validate(self, token: str) -> Validated:
        try:
            answer = await self._ask_keystone(token)
        except IdentityUnavailable:
            KEYSTONE_VALIDATIONS.labels("unavailable").inc()
            raise
        KEYSTONE_VALIDATIONS.labels("valid" if answer.subject else "invalid").inc()
        return answer

    async def _ask_keystone(self, token: str) -> Validated:
        for attempt in (1, 2):
            service_token = await self._current_service_token()
            response = await self._call(
                "validate",
                "GET",
                "/auth/tokens",
                params={"nocatalog": "1"},
                headers={"X-Auth-Token": service_token, "X-Subject-Token": token},
            )
            if response.status_code == 401 and attempt == 1:
                # allot's own token was revoked or has lapsed: renew it once and ask again.
                self._drop_service_token(service_token)
                continue
            break
        if response.status_code == 404:
            # Keystone's answer for a token it never issued, one that expired, or one revoked:
            # remembered as invalid as long as a valid answer would be.
            return Validated(None, self._clock() + self._settings.auth_keystone_cache_seconds)
        if response.status_code != 200:
            raise self._failure(
                "status",
                f"validating a token: Keystone answered {response.status_code}"
                + (" to allot's own token" if response.status_code in (401, 403) else ""),
            )
        token_body = self._parse(response)
        return Validated(subject_of(token_body), token_body.expires_at.timestamp())

    async def _current_service_token(self) -> str:
        current = self._service_token
        if current is not None and self._clock() < current.renew_at:
            return current.value
        async with self._renewal:
            # Whoever waited on the lock finds the token the first one obtained.
            current = self._service_token
            if current is None or self._clock() >= current.renew_at:
                current = await self._authenticate()
                self._service_token = current
            return current.value

    def _drop_service_token(self, value: str) -> None:
        if self._service_token is not None and self._service_token.value == value:
            self._service_token = None

    async def _authenticate(self) -> _ServiceToken:
        s = self._settings
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": s.auth_keystone_username,
                            "domain": {"name": s.auth_keystone_user_domain},
                            "password": self._password,
                        }
                    },
                },
                "scope": {
                    "project": {
                        "name": s.auth_keystone_project,
                        "domain": {"name": s.auth_keystone_project_domain},
                    }
                },
            }
        }
        response = await self._call(
            "authenticate", "POST", "/auth/tokens", params={"nocatalog": "1"}, json=body
        )
        value = response.headers.get("x-subject-token")
        if response.status_code != 201 or not value:
            raise self._failure(
                "credentials",
                f"authenticating allot's service user {s.auth_keystone_username!r} in project "
                f"{s.auth_keystone_project!r}: Keystone answered {response.status_code}",
            )
        now = self._clock()
        expires = self._parse(response).expires_at.timestamp()
        margin = min(_RENEW_MARGIN_MAX_S, max(0.0, expires - now) * _RENEW_FRACTION)
        log.info("authenticated to Keystone as allot's service user")
        return _ServiceToken(value, expires - margin)

    async def _call(self, call: str, method: str, path: str, **kwargs: object) -> httpx.Response:
        started = time.perf_counter()
        try:
            return await self._client.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.TimeoutException as exc:
            raise self._failure("timeout", f"{call}: {type(exc).__name__}") from None
        except httpx.HTTPError as exc:
            raise self._failure("unreachable", f"{call}: {type(exc).__name__}: {exc}") from None
        finally:
            KEYSTONE_LATENCY.labels(call).observe(time.perf_counter() - started)

    def _parse(self, response: httpx.Response) -> _Token:
        try:
            return _TokenDocument.model_validate_json(response.content).token
        except ValidationError as exc:
            raise self._failure(
                "answer", f"Keystone's token document is not as expected ({exc.error_count()})"
            ) from None

    def _failure(self, reason: str, detail: str) -> IdentityUnavailable:
        KEYSTONE_FAILURES.labels(reason).inc()
        log.error("Keystone could not validate a token: %s", detail, extra={"reason": reason})
        return IdentityUnavailable(detail)
