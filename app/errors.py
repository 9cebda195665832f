"""Error codes, the Placement error envelope, and the exception handlers.

Every error body is generic: `detail` is a fixed sentence chosen by `code`.
What actually went wrong is logged (with the same request id), never returned.
"""

from __future__ import annotations

import html
import json
import socket
from http import HTTPStatus
from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

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
    415: "The request body must be JSON (application/json).",
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


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", "") or ""


def error_response(
    request: Request,
    status: int,
    code: str,
    *,
    log_detail: str = "",
    pointer: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, str] | None = None,
) -> Response:
    # The request's one access log line (app.middleware) carries the code and the detail.
    request.state.error_code = code
    request.state.error_detail = log_detail
    body, media_type = render(
        status, code, request_id_of(request), request.headers.get("accept"), pointer, extra
    )
    return Response(body, status_code=status, headers=headers, media_type=media_type)


def _pointer(loc: tuple[Any, ...]) -> str | None:
    # Only the location inside the body or query: "where, never what".
    if not loc or loc[0] not in ("body", "query"):
        return None
    parts = [str(p) for p in loc[1:]]
    return "/" + "/".join(parts) if parts else None


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(
        request,
        exc.status,
        exc.code,
        log_detail=exc.log_detail,
        pointer=exc.pointer,
        headers=exc.headers,
        extra=exc.extra,
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    pointer = _pointer(tuple(errors[0].get("loc", ()))) if errors else None
    summary = "; ".join(
        f"{'/'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in errors[:5]
    )
    return error_response(request, 400, VALIDATION, log_detail=summary, pointer=pointer)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request)
    return error_response(
        request, exc.status_code, UNDEFINED, log_detail=str(exc.detail), headers=headers
    )


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> str:
    """Every method the request's path answers to.

    Starlette names only the methods of the first route that matched the path, and FastAPI
    declares one route per method, so `Allow` would miss the others (POST beside GET). Ask the
    router, method by method (only on a 405, so the cost does not matter).
    """
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


# How long a client is asked to wait when the database cannot be reached.
UNAVAILABLE_RETRY_AFTER = "5"

# What the drivers raise when the database is down, unreachable or its pool exhausted.
_UNREACHABLE: tuple[type[Exception], ...] = (
    ConnectionError,
    TimeoutError,
    socket.gaierror,
    sqlalchemy.exc.TimeoutError,
    sqlalchemy.exc.DBAPIError,
)


def is_database_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        return exc.connection_invalidated or isinstance(
            exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError
        )
    return isinstance(exc, _UNREACHABLE)


async def _unavailable(request: Request, exc: Exception) -> Response:
    # The session's context manager has already rolled the transaction back.
    if not is_database_unavailable(exc):
        raise exc  # any other database error is a 500 (app.middleware)
    return error_response(
        request,
        503,
        UNAVAILABLE,
        log_detail=f"database unavailable: {type(exc).__name__}: {str(exc)[:300]}",
        headers={"Retry-After": UNAVAILABLE_RETRY_AFTER},
    )


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for kind in _UNREACHABLE:
        app.add_exception_handler(kind, _unavailable)
    # Anything else is answered by app.middleware as a generic 500, with headers and a log line.
