"""The exception handlers that answer errors with the Placement envelope (app.errors)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.errors import UNDEFINED, VALIDATION, ApiError, render


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


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # Anything else, a database outage included, is answered by app.middleware: 503 for an
    # outage (whichever path the statement took), a generic 500 otherwise.
