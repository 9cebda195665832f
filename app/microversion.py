"""OpenStack-API-Version negotiation (`OpenStack-API-Version: placement 1.39`).

The request dependencies that hand a route its version are in app.dependencies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.errors import UNDEFINED, ApiError

SERVICE_TYPE = "placement"
HEADER = "openstack-api-version"
MIN_VERSION = (1, 0)
MAX_VERSION = (1, 39)


_VERSION_RE = re.compile(r"^(\d{1,4})\.(\d{1,4})$")


@dataclass(frozen=True, order=True)
class Microversion:
    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    def at_least(self, minor: int) -> bool:
        return (self.major, self.minor) >= (1, minor)


MIN = Microversion(*MIN_VERSION)
MAX = Microversion(*MAX_VERSION)


def _requested(header: str | None) -> str | None:
    """The version asked of this service in a header that may name several services."""
    if not header:
        return None
    for item in header.split(","):
        words = item.strip().split()
        if len(words) == 2 and words[0].lower() == SERVICE_TYPE:
            return words[1]
        if len(words) == 1 and words[0].lower() == SERVICE_TYPE:
            raise ApiError(400, UNDEFINED, log_detail=f"no version in {header!r}")
    return None


def negotiate(header: str | None) -> Microversion:
    """The microversion for a request header; ApiError 400 (malformed) or 406 (out of range)."""
    value = _requested(header)
    if value is None:
        return MIN
    if value.lower() == "latest":
        return MAX
    match = _VERSION_RE.match(value)
    if not match:
        raise ApiError(400, UNDEFINED, log_detail=f"malformed version {value!r}")
    version = Microversion(int(match.group(1)), int(match.group(2)))
    if not MIN <= version <= MAX:
        raise ApiError(
            406,
            UNDEFINED,
            log_detail=f"version {version} out of range",
            extra={"min_version": str(MIN), "max_version": str(MAX)},
        )
    return version


def response_header(version: Microversion) -> str:
    return f"{SERVICE_TYPE} {version}"


def require(version: Microversion, minor: int) -> None:
    """A route or feature that exists from 1.<minor> on is a 404 before it, as in Placement."""
    if not version.at_least(minor):
        raise ApiError(404, log_detail=f"needs microversion 1.{minor}, got {version}")
