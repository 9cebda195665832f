"""Authentication: nothing but the public routes answers without a valid token.

Every route in the OpenAPI document is walked at test time, so routes added later are covered.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from jwt.warnings import InsecureKeyLengthWarning

from app.authz.jwt_tokens import VERIFIED_TTL_S, InvalidToken, JwtAuthenticator
from app.openapi import PUBLIC_PATHS
from tests.conftest import (
    MINTED_TOKENS,
    TEST_SECRET,
    AppFactory,
    auth,
    make_client,
)
from tests.conftest import test_settings as settings_for

LATEST = {"openstack-api-version": "placement latest"}


def _concrete(path: str) -> str:
    """A path template with plausible values in place of its parameters."""
    sample = {"uuid": str(uuid.uuid4()), "consumer_uuid": str(uuid.uuid4())}
    out = path
    while "{" in out:
        start, end = out.index("{"), out.index("}")
        name = out[start + 1 : end]
        out = out[:start] + sample.get(name, "CUSTOM_SAMPLE") + out[end + 1 :]
    return out


def _operations(app: FastAPI) -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if method in ("get", "put", "post", "patch", "delete")
    ]


def _assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["errors"][0]["code"] == "allot.auth.required"


async def test_every_protected_route_needs_a_token(app: FastAPI) -> None:
    operations = [(m, p) for m, p in _operations(app) if p not in PUBLIC_PATHS]
    assert len(operations) >= 8  # the walk found the API, not an empty document
    async with make_client(app, LATEST) as anonymous:
        for method, path in operations:
            response = await anonymous.request(method, _concrete(path), json={})
            _assert_401(response)


async def test_public_routes_answer_without_a_token(app: FastAPI) -> None:
    async with make_client(app, {}) as anonymous:
        for path in ("/", "/healthz", "/readyz", "/docs", "/openapi.json"):
            assert (await anonymous.get(path)).status_code == 200, path


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": "mallory", "project_id": "p", "roles": ["admin"], "iat": now}
    claims["exp"] = now + 600
    claims.update(overrides)
    return claims


def _hs256(claims: dict[str, Any], key: str | bytes = TEST_SECRET, **headers: Any) -> str:
    token = jwt.encode(claims, key, algorithm="HS256", headers=headers or None)
    MINTED_TOKENS.add(token)
    return token


def _header_says_hs512() -> str:
    """Signed with the real key, under a header that claims HS512. PyJWT warns that the key is
    short for HS512: that is the forgery under test, not a finding."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return _hs256(_claims(), TEST_SECRET, alg="HS512")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(claims: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


async def test_a_valid_token_is_accepted_by_either_header(app: FastAPI) -> None:
    token = _hs256(_claims())
    async with make_client(app, LATEST) as c:
        assert (await c.get("/resource_classes", headers=auth(token))).status_code == 200
        other = await c.get("/resource_classes", headers={"x-auth-token": token})
        assert other.status_code == 200


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(_hs256(_claims(), "another-key-entirely-0123456789abcdef"), id="forged"),
        pytest.param(_hs256(_claims(exp=int(time.time()) - 3600)), id="expired"),
        pytest.param(_hs256(_claims(nbf=int(time.time()) + 3600)), id="not-yet-valid"),
        pytest.param(_hs256({"sub": "mallory", "roles": ["admin"]}), id="no-expiry"),
        pytest.param(_hs256(_claims(sub=None)), id="no-subject"),
        pytest.param(_hs256(_claims(roles={"admin": True})), id="roles-not-a-list"),
        pytest.param(_unsigned(_claims()), id="alg-none"),
        pytest.param(_hs256(_claims())[:-4] + "AAAA", id="tampered-signature"),
        pytest.param("not-a-jwt", id="garbage"),
        pytest.param(_header_says_hs512(), id="header-alg-lies"),
    ],
)
async def test_bad_tokens_are_401(app: FastAPI, token: str) -> None:
    async with make_client(app, LATEST) as c:
        _assert_401(await c.get("/resource_classes", headers=auth(token)))
        _assert_401(await c.get("/resource_classes", headers={"x-auth-token": token}))


async def test_tokens_signed_with_another_algorithm_are_401(app: FastAPI) -> None:
    token = jwt.encode(_claims(), TEST_SECRET + TEST_SECRET, algorithm="HS512")
    MINTED_TOKENS.add(token)
    async with make_client(app, LATEST) as c:
        _assert_401(await c.get("/resource_classes", headers=auth(token)))


async def test_audience_and_issuer_are_checked_when_configured(app_factory: AppFactory) -> None:
    async with app_factory(auth_audience="allot", auth_issuer="https://idp.example") as strict:
        good = _hs256(_claims(aud="allot", iss="https://idp.example"))
        wrong_aud = _hs256(_claims(aud="nova", iss="https://idp.example"))
        no_aud = _hs256(_claims(iss="https://idp.example"))
        wrong_iss = _hs256(_claims(aud="allot", iss="https://evil.example"))
        async with make_client(strict, LATEST) as c:
            assert (await c.get("/traits", headers=auth(good))).status_code == 200
            for token in (wrong_aud, no_aud, wrong_iss):
                _assert_401(await c.get("/traits", headers=auth(token)))


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _sign(claims: dict[str, Any], key: Any, alg: str, **headers: Any) -> str:
    token = jwt.encode(claims, key, algorithm=alg, headers=headers or None)
    MINTED_TOKENS.add(token)
    return token


@pytest.mark.parametrize(
    ("alg", "make_key"),
    [("RS256", _rsa), ("ES256", lambda: ec.generate_private_key(ec.SECP256R1()))],
)
async def test_asymmetric_keys_from_a_public_key_file(
    app_factory: AppFactory, tmp_path: Path, alg: str, make_key: Any
) -> None:
    key, stranger = make_key(), make_key()
    pem = tmp_path / "issuer.pem"
    pem.write_bytes(_public_pem(key))
    settings = {"auth_jwt_secret": None, "auth_public_key_file": pem}
    async with app_factory(**settings) as asymmetric, make_client(asymmetric, LATEST) as c:
        ok = await c.get("/traits", headers=auth(_sign(_claims(), key, alg)))
        assert ok.status_code == 200
        _assert_401(await c.get("/traits", headers=auth(_sign(_claims(), stranger, alg))))
        # The old shared secret means nothing once keys are asymmetric.
        _assert_401(await c.get("/traits", headers=auth(_hs256(_claims()))))


async def test_algorithm_confusion_hs256_signed_with_the_public_key_is_401(
    app_factory: AppFactory, tmp_path: Path
) -> None:
    pem = tmp_path / "issuer.pem"
    public = _public_pem(_rsa())
    pem.write_bytes(public)
    # PyJWT refuses to build this token, so build it by hand, as an attacker would.
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims()).encode())
    signature = hmac.new(public, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{header}.{payload}.{_b64(signature)}"
    MINTED_TOKENS.add(token)
    settings = {"auth_jwt_secret": None, "auth_public_key_file": pem}
    async with app_factory(**settings) as asymmetric, make_client(asymmetric, LATEST) as c:
        _assert_401(await c.get("/traits", headers=auth(token)))


async def test_claim_names_are_configurable_with_a_dotted_roles_path(
    app_factory: AppFactory,
) -> None:
    keycloak_like = _hs256(
        {
            "sub": "kc-user",
            "tenant": "project-k",
            "realm_access": {"roles": ["member", "reader"]},
            "exp": int(time.time()) + 600,
        }
    )
    admin_like = _hs256(
        {"sub": "kc-admin", "realm_access": {"roles": ["admin"]}, "exp": int(time.time()) + 600}
    )
    settings = {"auth_roles_claim": "realm_access.roles", "auth_project_claim": "tenant"}
    async with app_factory(**settings) as keycloak, make_client(keycloak, LATEST) as c:
        # A member may read classes but not create them: the roles were read from the path.
        assert (await c.get("/resource_classes", headers=auth(keycloak_like))).status_code == 200
        denied = await c.post(
            "/resource_classes", json={"name": "CUSTOM_KC"}, headers=auth(keycloak_like)
        )
        assert denied.status_code == 403
        created = await c.post(
            "/resource_classes", json={"name": "CUSTOM_KC"}, headers=auth(admin_like)
        )
        assert created.status_code == 201


class _JwksServer:
    """A real HTTP server publishing a key set; counts how often it is fetched."""

    def __init__(self, port: int) -> None:
        import http.server
        import threading

        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def publish(self, key: rsa.RSAPrivateKey, kid: str) -> None:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        self.keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})

    def __enter__(self) -> _JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_jwks_url_is_cached_and_refreshed_on_an_unknown_kid(
    app_factory: AppFactory,
) -> None:
    first, second, stranger = _rsa(), _rsa(), _rsa()
    with _JwksServer(8510) as idp:
        idp.publish(first, "k1")
        settings = {"auth_jwks_url": idp.url, "auth_jwks_refresh_cooldown_seconds": 0}
        async with (
            app_factory(auth_jwt_secret=None, **settings) as jwks,
            make_client(jwks, LATEST) as c,
        ):
            token = _sign(_claims(), first, "RS256", kid="k1")
            for _ in range(3):
                assert (await c.get("/traits", headers=auth(token))).status_code == 200
            assert idp.fetches == 1  # cached after the first fetch

            # The issuer rotates in a new key: a token naming it triggers one refresh.
            idp.publish(second, "k2")
            rotated = _sign(_claims(), second, "RS256", kid="k2")
            assert (await c.get("/traits", headers=auth(rotated))).status_code == 200
            assert idp.fetches == 2

            # A key the issuer never published, or a forged signature, is still 401.
            _assert_401(
                await c.get("/traits", headers=auth(_sign(_claims(), stranger, "RS256", kid="k9")))
            )
            _assert_401(
                await c.get("/traits", headers=auth(_sign(_claims(), stranger, "RS256", kid="k1")))
            )


# A verified token is remembered (its signature is not checked on every request), but never
# past its expiry, and never for longer than a minute: a key withdrawn from the JWKS stops
# admitting its tokens by then.


def test_a_token_accepted_before_stops_working_when_it_expires() -> None:
    authenticator = JwtAuthenticator(settings_for("sqlite+aiosqlite://", auth_leeway_seconds=0))
    token = authenticator.mint(user="u", project="p", roles=["reader"], ttl_seconds=1)
    MINTED_TOKENS.add(token)
    assert authenticator.verify(token).user_id == "u"
    assert authenticator.verify(token).user_id == "u"
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    with pytest.raises(InvalidToken):
        authenticator.verify(token)


def test_a_key_withdrawn_from_the_jwks_stops_admitting_its_tokens_within_a_minute() -> None:
    key, now = _rsa(), [time.time()]
    with _JwksServer(8511) as idp:
        idp.publish(key, "k1")
        settings = settings_for(
            "sqlite+aiosqlite://",
            auth_jwt_secret=None,
            auth_jwks_url=idp.url,
            auth_jwks_cache_seconds=1,
            auth_jwks_refresh_cooldown_seconds=0,
        )
        authenticator = JwtAuthenticator(settings, clock=lambda: now[0])
        token = _sign(_claims(), key, "RS256", kid="k1")
        assert authenticator.verify(token).user_id == "mallory"

        idp.keys.clear()
        time.sleep(1.1)  # the JWKS client's own key cache (1 s here) has lapsed
        assert authenticator.verify(token).user_id == "mallory"  # remembered
        now[0] += VERIFIED_TTL_S
        with pytest.raises(InvalidToken):
            authenticator.verify(token)
