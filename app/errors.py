"""Error codes, the Placement error envelope, and which failures mean "the database is away".

Every error body is generic: `detail` is a fixed sentence chosen by `code`.
What actually went wrong is logged (with the same request id), never returned.
The handlers that answer with these bodies are in app.error_handlers (this module is used by
services, which never import the web framework).
"""

from __future__ import annotations

import html
import json
from http import HTTPStatus
from typing import Any

import asyncpg
import sqlalchemy.exc

# Placement's own codes.
CONCURRENT_UPDATE = "placement.concurrent_update"
DUPLICATE_NAME = "placement.duplicate_name"
INVENTORY_INUSE = "placement.inventory.inuse"
PROVIDER_INUSE = "placement.resource_provider.inuse"
PROVIDER_NOT_FOUND = "placement.resource_provider.not_found"
PROVIDER_CANNOT_DELETE_PARENT = "placement.resource_provider.cannot_delete_parent"
QUERY_DUPLICATE_KEY = "placement.query.duplicate_key"
QUERY_BAD_VALUE = "placement.query.bad_value"
QUERY_MISSING_VALUE = "placement.query.missing_value"
UNDEFINED = "placement.undefined_code"

# allot's own codes, where Placement has none.
AUTH_REQUIRED = "allot.auth.required"
AUTH_FORBIDDEN = "allot.auth.forbidden"
RATE_LIMITED = "allot.rate_limited"
BODY_TOO_LARGE = "allot.body.too_large"
VALIDATION = "allot.validation"
UNAVAILABLE = "allot.unavailable"
INTERNAL = "allot.internal"

_DETAILS: dict[str, str] = {
    CONCURRENT_UPDATE: "The resource was changed by another request. Re-read it and retry.",
    DUPLICATE_NAME: "The name is already in use.",
    INVENTORY_INUSE: "The inventory is in use by allocations and cannot be changed that way.",
    PROVIDER_INUSE: "The resource provider has allocations and cannot be deleted.",
    PROVIDER_NOT_FOUND: "A resource provider named in the request was not found.",
    PROVIDER_CANNOT_DELETE_PARENT: "The resource provider has children and cannot be deleted.",
    QUERY_DUPLICATE_KEY: "A query parameter was given more than once.",
    QUERY_BAD_VALUE: "A query parameter has an invalid value.",
    QUERY_MISSING_VALUE: "A required query parameter is missing.",
    AUTH_REQUIRED: "Authentication is required.",
    AUTH_FORBIDDEN: "The request is not allowed for this caller.",
    RATE_LIMITED: "Too many requests. Retry later.",
    BODY_TOO_LARGE: "The request body is too large.",
    VALIDATION: "The request is not valid.",
    UNAVAILABLE: "The service is temporarily unavailable. Retry later.",
    INTERNAL: "An internal error occurred.",
}

# Generic sentences for errors that carry Placement's undefined code, by status.
_STATUS_DETAILS: dict[int, str] = {
    400: "The request is not valid.",
    404: "The resource was not found.",
    405: "The method is not allowed for this resource.",
    406: "The requested microversion or media type is not available.",
    409: "The request conflicts with the current state of the resource.",
    414: "The request line is too long.",
    415: "The request body must be JSON (application/json).",
    431: "The request headers are too large.",
}


class ApiError(Exception):
    """An error answered with the Placement envelope.

    `log_detail` is what the log line says; it is never sent to the client.
    """

    def __init__(
        self,
        status: int,
        code: str = UNDEFINED,
        *,
        log_detail: str = "",
        pointer: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        super().__init__(log_detail or code)
        self.extra = extra or {}
        self.status = status
        self.code = code
        self.log_detail = log_detail
        self.pointer = pointer
        self.headers = headers or {}


def bad_request(
    log_detail: str = "", code: str = UNDEFINED, pointer: str | None = None
) -> ApiError:
    return ApiError(400, code, log_detail=log_detail, pointer=pointer)


def not_found(log_detail: str = "", code: str = UNDEFINED) -> ApiError:
    return ApiError(404, code, log_detail=log_detail)


def conflict(log_detail: str = "", code: str = UNDEFINED) -> ApiError:
    return ApiError(409, code, log_detail=log_detail)


def forbidden(log_detail: str = "") -> ApiError:
    return ApiError(403, AUTH_FORBIDDEN, log_detail=log_detail)


def detail_for(code: str, status: int) -> str:
    if code in _DETAILS:
        return _DETAILS[code]
    return _STATUS_DETAILS.get(status, HTTPStatus(status).phrase + ".")


def envelope(
    status: int,
    code: str,
    request_id: str,
    pointer: str | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "status": status,
        "title": HTTPStatus(status).phrase,
        "detail": detail_for(code, status),
        "code": code,
        "request_id": request_id,
    }
    if pointer:
        error["source"] = {"pointer": pointer}
    if extra:
        error.update(extra)
    return {"errors": [error]}


def wants_html(accept: str | None) -> bool:
    """A client (a browser) that asks for HTML and will not take JSON gets its errors as a page."""
    if not accept:
        return False
    ranges = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return "text/html" in ranges and not ranges & {"application/json", "application/*", "*/*"}


def render(
    status: int,
    code: str,
    request_id: str,
    accept: str | None,
    pointer: str | None = None,
    extra: dict[str, str] | None = None,
) -> tuple[bytes, str]:
    """The error body and its media type: the JSON envelope, or the same generic words as HTML."""
    if wants_html(accept):
        title = html.escape(f"{status} {HTTPStatus(status).phrase}")
        detail = html.escape(detail_for(code, status))
        page = (
            f"<html><head><title>{title}</title></head>"
            f"<body><h1>{title}</h1><p>{detail}</p></body></html>"
        )
        return page.encode(), "text/html; charset=UTF-8"
    body = json.dumps(envelope(status, code, request_id, pointer, extra)).encode()
    return body, "application/json"


# How long a client is asked to wait when the database cannot be reached.
UNAVAILABLE_RETRY_AFTER = "5"

# SQLSTATEs of a database that cannot serve us now: every connection exception (class 08),
# too many connections, an administrator's or a crash's shutdown, a server still starting,
# a session closed for idleness, and a standby reached where a primary was (a failover).
_OUTAGE_SQLSTATE_CLASSES = ("08",)
_OUTAGE_SQLSTATES = frozenset({"53300", "57P01", "57P02", "57P03", "57P05", "25006"})
# What asyncpg says when a statement is tried on a connection that is gone, or that a
# failure left in the middle of another exchange (seen as a primary died under load).
_CLOSED_CONNECTION = ("connection is closed", "connection was closed")
_CONNECTION_LEFT_MIDWAY = "another operation"


def _is_outage(exc: BaseException) -> bool:
    if isinstance(exc, OSError | sqlalchemy.exc.TimeoutError | sqlalchemy.exc.DisconnectionError):
        return True  # refused, reset, unreachable, DNS, a pool or write-slot timeout
    if isinstance(exc, asyncpg.TargetServerAttributeNotMatched):
        return True  # every host named is up but none is a primary: a failover under way
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        if isinstance(exc, sqlalchemy.exc.OperationalError):
            return True  # SQLite's file unreachable or locked past its timeout
    sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    if isinstance(sqlstate, str) and (
        sqlstate in _OUTAGE_SQLSTATES or sqlstate.startswith(_OUTAGE_SQLSTATE_CLASSES)
    ):
        return True
    if isinstance(exc, asyncpg.InterfaceError | sqlalchemy.exc.InterfaceError):
        return any(words in str(exc) for words in _CLOSED_CONNECTION)
    if isinstance(exc, asyncpg.InternalClientError):
        return _CONNECTION_LEFT_MIDWAY in str(exc)
    return False


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether `exc`, raised by whichever path reached the database (the ORM session, or the
    driver itself), means the database could not be reached or kept: a 503, not a 500.

    The driver's own exception may be the one raised, or wrapped by SQLAlchemy (`orig`),
    or the cause of another (`raise ... from`): all of them are looked at.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if _is_outage(current):
            return True
        pending += [getattr(current, "orig", None), current.__cause__]
    return False
