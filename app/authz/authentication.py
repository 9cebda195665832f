"""Authentication: which verifier a token goes to, and what a refused client is told.

A JWT goes to the JWT verifier when JWTs are enabled (a key source is configured, or no
Keystone is); any other token goes to Keystone when ALLOT_AUTH_KEYSTONE_URL is set. So a
Keystone deployment issuing JWS tokens works with Keystone alone configured.
"""

from __future__ import annotations

import jwt

from app.authz.jwt_tokens import JwtAuthenticator
from app.authz.keystone import KeystoneAuthenticator
from app.authz.subjects import InvalidToken, Subject
from app.authz.token_cache import Admit
from app.settings import Settings


def looks_like_jwt(token: str) -> bool:
    if token.count(".") != 2:
        return False
    try:
        jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return False
    return True


class Authentication:
    def __init__(self, settings: Settings) -> None:
        self.jwt = JwtAuthenticator(settings) if settings.verifies_jwts else None
        self.keystone = KeystoneAuthenticator(settings) if settings.auth_keystone_url else None
        challenges = []
        if self.keystone is not None:
            # keystonemiddleware's challenge: where a client gets a token.
            challenges.append(f'Keystone uri="{self.keystone.url}"')
        if self.jwt is not None:
            challenges.append("Bearer")
        self.challenge = ", ".join(challenges)

    async def subject(self, token: str, admit: Admit | None = None) -> Subject:
        """The verified identity a token carries; InvalidToken or IdentityUnavailable if none.
        `admit` is asked before a call to the identity service, and may refuse it."""
        if self.jwt is not None and looks_like_jwt(token):
            return await self.jwt.verify_async(token)
        if self.keystone is not None:
            return await self.keystone.subject(token, admit)
        raise InvalidToken("not a JWT, and no Keystone is configured")

    async def close(self) -> None:
        if self.keystone is not None:
            await self.keystone.close()
