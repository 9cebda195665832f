"""JWTs: verify a bearer JWT and turn its claims into a Subject."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jwt

from app.authz.subjects import InvalidToken, Subject
from app.settings import SECRET_FILE, ConfigurationError, Settings

log = logging.getLogger("allot.auth")

HMAC_ALGORITHMS = ["HS256"]
ASYMMETRIC_ALGORITHMS = ["RS256", "ES256"]

# Tokens already verified, so a client's every request is not decoded and checked again (a
# tenth of a claim's CPU). Keyed by the whole token: no other string can hit an entry. Each
# entry lasts until its token expires, and at most VERIFIED_TTL_S, so that a key withdrawn
# from the JWKS stops admitting its tokens by then.
VERIFIED_CACHE_SIZE = 4096
VERIFIED_TTL_S = 60.0


class _Verified(NamedTuple):
    subject: Subject
    until: float


def local_secret(path: Path = SECRET_FILE) -> str:
    """The embedded deployment's signing secret: created once, readable by the owner only."""
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(48)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ConfigurationError(
            f"ALLOT_AUTH_JWT_SECRET: no signing key is configured, and the local one cannot be "
            f"created in {path.parent} ({exc.strerror or exc}); set ALLOT_AUTH_JWT_SECRET "
            "(or a key file or JWKS URL)"
        ) from None
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


def _claim(claims: dict[str, Any], dotted: str) -> Any:
    value: Any = claims
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class JwtAuthenticator:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._clock = clock
        self._verified: dict[str, _Verified] = {}
        self._jwks: jwt.PyJWKClient | None = None
        self._key: Any = None
        if settings.auth_jwks_url:
            self._jwks = jwt.PyJWKClient(
                settings.auth_jwks_url,
                # Not cache_keys: it keeps every key it met by kid for the life of the
                # process, so a key the issuer withdrew would still verify. The key set is
                # cached for auth_jwks_cache_seconds, then fetched again.
                cache_keys=False,
                lifespan=max(1, settings.auth_jwks_cache_seconds),
                cooldown_duration=settings.auth_jwks_refresh_cooldown_seconds,
                timeout=5,
            )
            self.algorithms = settings.auth_algorithms or ASYMMETRIC_ALGORITHMS
        elif settings.auth_public_key_file:
            try:
                self._key = Path(settings.auth_public_key_file).read_bytes()
            except OSError as exc:
                raise ConfigurationError("ALLOT_AUTH_PUBLIC_KEY_FILE is not readable") from exc
            self.algorithms = settings.auth_algorithms or ASYMMETRIC_ALGORITHMS
        else:
            self._key = settings.auth_jwt_secret or local_secret()
            self.algorithms = HMAC_ALGORITHMS
        if "none" in {a.lower() for a in self.algorithms}:
            raise ConfigurationError("ALLOT_AUTH_ALGORITHMS must not include 'none'")

    @property
    def signing_secret(self) -> str | None:
        """The HMAC secret, for `allot token`; None when keys are asymmetric."""
        return self._key if self.algorithms == HMAC_ALGORITHMS else None

    def _verification_key(self, token: str) -> Any:
        if self._jwks is None:
            return self._key
        try:
            # PyJWKClient refetches the key set when it meets an unknown kid.
            return self._jwks.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientError as exc:
            raise InvalidToken(f"no signing key: {exc}") from exc

    async def verify_async(self, token: str) -> Subject:
        """`verify`, without blocking the event loop when a JWKS fetch may be needed."""
        known = self._already_verified(token)
        if known is not None:
            return known
        if self._jwks is not None:
            return await asyncio.to_thread(self.verify, token)
        return self.verify(token)

    def verify(self, token: str) -> Subject:
        known = self._already_verified(token)
        if known is not None:
            return known
        subject, expires = self._decode(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            # The oldest entry; JWKS verifications run in threads, so another may be evicting.
            self._verified.pop(next(iter(self._verified), ""), None)
        until = min(expires + self.settings.auth_leeway_seconds, self._clock() + VERIFIED_TTL_S)
        self._verified[token] = _Verified(subject, until)
        return subject

    def _already_verified(self, token: str) -> Subject | None:
        known = self._verified.get(token)
        if known is None:
            return None
        if self._clock() < known.until:
            return known.subject
        self._verified.pop(token, None)
        return None

    def _decode(self, token: str) -> tuple[Subject, float]:
        """Check signature and claims; the token's subject and expiry time."""
        settings = self.settings
        try:
            claims = jwt.decode(
                token,
                self._verification_key(token),
                algorithms=self.algorithms,
                audience=settings.auth_audience,
                issuer=settings.auth_issuer,
                leeway=settings.auth_leeway_seconds,
                options={
                    "require": ["exp", settings.auth_user_claim],
                    "verify_aud": settings.auth_audience is not None,
                },
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"{type(exc).__name__}: {exc}") from exc
        return self._subject(claims), float(claims["exp"])

    def _subject(self, claims: dict[str, Any]) -> Subject:
        s = self.settings
        user = _claim(claims, s.auth_user_claim)
        project = _claim(claims, s.auth_project_claim)
        roles = _claim(claims, s.auth_roles_claim) or []
        system = _claim(claims, s.auth_system_claim)
        if isinstance(roles, str):
            roles = [r for r in roles.replace(",", " ").split() if r]
        if not isinstance(user, str) or not user or not isinstance(roles, list):
            raise InvalidToken("claims of the wrong type")
        if project is not None and not isinstance(project, str):
            raise InvalidToken("project claim of the wrong type")
        return Subject(
            user_id=user[:255],
            project_id=project[:255] if project else None,
            roles=frozenset(str(r).lower() for r in roles if isinstance(r, str)),
            system=system in ("all", True),
        )

    def mint(
        self,
        *,
        user: str,
        project: str | None,
        roles: list[str],
        system: bool = False,
        ttl_seconds: int = 3600,
    ) -> str:
        """A development token signed with the local HMAC key."""
        secret = self.signing_secret
        if secret is None:
            raise ConfigurationError("allot token needs an HMAC key (ALLOT_AUTH_JWT_SECRET)")
        now = int(time.time())
        s = self.settings
        claims: dict[str, Any] = {
            "iat": now,
            "exp": now + ttl_seconds,
            s.auth_user_claim: user,
        }
        if project:
            claims[s.auth_project_claim] = project
        claims[s.auth_roles_claim] = roles
        if system:
            claims[s.auth_system_claim] = "all"
        if s.auth_issuer:
            claims["iss"] = s.auth_issuer
        if s.auth_audience:
            claims["aud"] = s.auth_audience
        return jwt.encode(claims, secret, algorithm="HS256")
