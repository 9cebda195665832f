"""Service configuration: environment variables with the ALLOT_ prefix, read once."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

VAR_DIR = Path("var")
DEFAULT_DATABASE_URL = f"sqlite+aiosqlite:///{VAR_DIR / 'allot.db'}"
SECRET_FILE = VAR_DIR / "jwt-secret"


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_ALGORITHMS = ("HS256", "RS256", "ES256")
_DRIVERS = ("sqlite+aiosqlite://", "postgresql+asyncpg://")


class ConfigurationError(Exception):
    """A setting is missing or wrong; the message names the setting and never its value."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ALLOT_", extra="ignore")

    env: Literal["development", "production"] = "development"
    log_level: str = "INFO"

    database_url: str = DEFAULT_DATABASE_URL
    # A read replica (one or several standbys) for the reads that may be stale, used while
    # it is at most this far behind the primary.
    database_read_url: str | None = None
    database_read_max_lag_ms: int = Field(default=1000, ge=0, le=3_600_000)
    # Per process. More connections than PostgreSQL has cores to run them only queue inside it:
    # on 2 cores, 3-5 per process of 2 gave 20% more claims/s than 10, at a lower p99.
    database_pool_size: int = Field(default=5, ge=1, le=200)
    # No overflow by default: an overflow connection is opened for a burst and closed after
    # it, so a load above the pool size opens one (a PostgreSQL backend and the driver's setup
    # round trips) per request; waiting for a pooled one is cheaper (claims/s +40% at 32 clients).
    database_max_overflow: int = Field(default=0, ge=0, le=200)
    database_pool_timeout: float = Field(default=10.0, gt=0)
    # Behind a transaction-mode pooler (PgBouncer), where no server-side prepared statement
    # outlives a transaction: statements are prepared unnamed, or under names of their own.
    database_transaction_pooler: bool = False
    # How many times a write transaction is retried after losing a race.
    write_retries: int = Field(default=10, ge=0, le=100)

    auth_jwt_secret: str | None = Field(default=None, repr=False)
    auth_public_key_file: Path | None = None
    auth_jwks_url: str | None = None
    # How long a fetched JWKS is trusted, and the least time between two refreshes forced by
    # tokens naming an unknown key id (so forged kids cannot hammer the identity provider).
    auth_jwks_cache_seconds: int = Field(default=300, ge=0, le=86_400)
    auth_jwks_refresh_cooldown_seconds: int = Field(default=30, ge=0, le=3600)
    auth_algorithms: Annotated[list[str] | None, NoDecode] = None
    auth_issuer: str | None = None
    auth_audience: str | None = None
    auth_leeway_seconds: int = Field(default=30, ge=0, le=600)
    auth_user_claim: str = "sub"
    auth_project_claim: str = "project_id"
    auth_roles_claim: str = "roles"
    auth_system_claim: str = "system"

    # Keystone tokens (Identity v3), validated with allot's own service credentials.
    auth_keystone_url: str | None = None
    auth_keystone_username: str | None = None
    auth_keystone_password: str | None = Field(default=None, repr=False)
    auth_keystone_password_file: Path | None = None
    auth_keystone_project: str = "service"
    auth_keystone_user_domain: str = "Default"
    auth_keystone_project_domain: str = "Default"
    auth_keystone_ca_file: Path | None = None
    auth_keystone_timeout: float = Field(default=5.0, gt=0, le=60)
    # A validated token is trusted this long at most (and never past its expiry): a revoked
    # token stops working within this time.
    auth_keystone_cache_seconds: int = Field(default=300, ge=0, le=86_400)
    auth_keystone_cache_size: int = Field(default=10_000, ge=1, le=1_000_000)

    policy: str = "tenant"

    rate_limit: str = "1000/second"
    rate_limit_anon: str = "20/second"
    rate_limit_storage: str = "memory://"

    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    docs_enabled: bool | None = None

    # Allocation candidates: the most candidates one request may build.
    candidates_max: int = Field(default=10_000, ge=1, le=1_000_000)
    # breadth-first takes candidates from each root provider in turn (so `limit` spreads over
    # hosts); depth-first exhausts one root before the next.
    candidates_strategy: Literal["breadth-first", "depth-first"] = "breadth-first"

    @field_validator("cors_origins", "auth_algorithms", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("auth_algorithms")
    @classmethod
    def _pinned_algorithms(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not set(value) <= set(_ALGORITHMS)):
            raise ValueError(f"must name some of {', '.join(_ALGORITHMS)}")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in _LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
        return value.upper()

    @field_validator("database_url", "database_read_url")
    @classmethod
    def _supported_database(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(_DRIVERS):
            raise ValueError(f"must be a SQLAlchemy URL starting with {' or '.join(_DRIVERS)}")
        return value

    @field_validator("policy")
    @classmethod
    def _policy_given(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be tenant, placement or a policy file path")
        return value

    @field_validator("auth_keystone_url")
    @classmethod
    def _identity_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be the Identity v3 URL, e.g. http://keystone:5000/v3")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _production_needs_a_key(self) -> Settings:
        if self.env == "production" and not (self.has_key_source or self.auth_keystone_url):
            raise ValueError(
                "ALLOT_ENV=production needs ALLOT_AUTH_JWT_SECRET, ALLOT_AUTH_PUBLIC_KEY_FILE, "
                "ALLOT_AUTH_JWKS_URL or ALLOT_AUTH_KEYSTONE_URL"
            )
        return self

    @model_validator(mode="after")
    def _keystone_needs_credentials(self) -> Settings:
        if self.auth_keystone_url and not (
            self.auth_keystone_username
            and (self.auth_keystone_password or self.auth_keystone_password_file)
        ):
            raise ValueError(
                "ALLOT_AUTH_KEYSTONE_URL needs ALLOT_AUTH_KEYSTONE_USERNAME and "
                "ALLOT_AUTH_KEYSTONE_PASSWORD (or ALLOT_AUTH_KEYSTONE_PASSWORD_FILE)"
            )
        return self

    @property
    def has_key_source(self) -> bool:
        return bool(self.auth_jwt_secret or self.auth_public_key_file or self.auth_jwks_url)

    @property
    def verifies_jwts(self) -> bool:
        """JWTs are verified with a configured key, or (without Keystone) the local one."""
        return self.has_key_source or not self.auth_keystone_url

    @property
    def is_embedded(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def show_docs(self) -> bool:
        if self.docs_enabled is not None:
            return self.docs_enabled
        return self.env == "development"


@lru_cache
def get_settings() -> Settings:
    return Settings()
