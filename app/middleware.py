"""The request context, as one pure ASGI middleware (cheaper than a stack of BaseHTTPMiddleware).

For every request: a request id, the text rule on its path, query and headers (app.text),
microversion negotiation, the body size limit, response headers (microversion, request id,
security), one JSON log line, metrics, 503 for a database outage whichever path the statement
took, and a generic 500 for anything unexpected, with the full story in the log.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import microversion, text
from app.errors import (
    BODY_TOO_LARGE,
    INTERNAL,
    QUERY_BAD_VALUE,
    UNAVAILABLE,
    UNAVAILABLE_RETRY_AFTER,
    UNDEFINED,
    VALIDATION,
    ApiError,
    is_database_unavailable,
    render,
)
from app.observability import (
    LATENCY,
    REQUESTS,
    request_id_var,
    service_subject_var,
    subject_var,
)

log = logging.getLogger("allot.access")


class BodyTooLarge(Exception):
    pass


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = f"req-{uuid.uuid4()}"
        request_id_var.set(request_id)
        subject_var.set("")
        service_subject_var.set("")
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        headers = Headers(scope=scope)
        version = microversion.MIN
        status_holder = {"status": 500, "started": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                out = MutableHeaders(scope=message)
                out["openstack-api-version"] = microversion.response_header(version)
                out.append("vary", "openstack-api-version")
                out["openstack-request-id"] = request_id
                out["x-openstack-request-id"] = request_id  # the name keystoneauth reads
                out["x-request-id"] = request_id
                out["x-content-type-options"] = "nosniff"
                if "cache-control" not in out and _wants_no_store(scope, message["status"]):
                    out["cache-control"] = "no-store"
            await send(message)

        try:
            _check_text(scope)
            _note_global_request_id(headers, state)
            version = microversion.negotiate(headers.get("openstack-api-version"))
            state["microversion"] = version
            _check_content_length(headers, self.max_body_bytes)
            limited = self._limited(receive)
            try:
                await self.app(scope, limited, send_wrapper)
            except Exception as exc:
                if not _replica_read_failed(exc, state, bool(status_holder["started"])):
                    raise
                # The read replica went away in the middle of a read that may be stale (a
                # GET: nothing was written): once more, on the primary.
                state["read_again_on_primary"] = True
                await self.app(scope, limited, send_wrapper)
        except ApiError as exc:
            await _send_error(
                send_wrapper, exc.status, exc.code, request_id, exc.headers, headers, exc.extra
            )
            state["error_code"], state["error_detail"] = exc.code, exc.log_detail
        except BodyTooLarge:
            await _send_error(send_wrapper, 413, BODY_TOO_LARGE, request_id, {}, headers)
            state["error_code"] = BODY_TOO_LARGE
        except Exception as exc:
            if is_database_unavailable(exc):
                # Rolled back already (the write's or the read's context manager).
                state["error_code"] = UNAVAILABLE
                state["error_detail"] = f"database unavailable: {type(exc).__name__}: {exc}"[:400]
                if not status_holder["started"]:
                    retry = {"Retry-After": UNAVAILABLE_RETRY_AFTER}
                    await _send_error(send_wrapper, 503, UNAVAILABLE, request_id, retry, headers)
            else:
                log.exception("unhandled error", extra={"error_code": INTERNAL})
                state["error_code"] = INTERNAL
                if not status_holder["started"]:
                    await _send_error(send_wrapper, 500, INTERNAL, request_id, {}, headers)
        finally:
            self._record(scope, state, int(status_holder["status"]), started)

    def _limited(self, receive: Receive) -> Receive:
        limit = self.max_body_bytes
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
            return message

        return wrapped

    @staticmethod
    def _record(scope: Scope, state: dict[str, Any], status: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        method = scope["method"]
        REQUESTS.labels(method, route, str(status)).inc()
        LATENCY.labels(method, route).observe(elapsed)
        extra: dict[str, Any] = {
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
        }
        if "global_request_id" in state:
            extra["global_request_id"] = state["global_request_id"]
        if "error_code" in state:
            extra["error_code"] = state["error_code"]
            extra["error_detail"] = state.get("error_detail", "")
        level = logging.ERROR if status >= 500 else logging.INFO
        log.log(level, "request", extra=extra)


def _wants_no_store(scope: Scope, status: int) -> bool:
    # Placement's successful responses carry no cache headers (reads from 1.15 set their own);
    # its clients' tests forbid any there. Error bodies are never to be cached.
    return status >= 400


def _replica_read_failed(exc: Exception, state: dict[str, Any], started: bool) -> bool:
    return (
        not started
        and bool(state.pop("read_from_replica", False))
        and not state.get("read_again_on_primary")
        and is_database_unavailable(exc)
    )


# The request headers allot reads; each must hold header text only (app.text).
_READ_HEADERS = frozenset(
    {
        b"openstack-api-version",
        b"content-type",
        b"accept",
        b"authorization",
        b"x-auth-token",
        b"x-service-token",
        b"content-length",
        b"x-openstack-request-id",
    }
)


def _check_text(scope: Scope) -> None:
    """The one rule for text, on what arrives before the body: 400, nothing else read."""
    # Some servers' raw_path carries the query string too: the path is what precedes it.
    raw_path = (scope.get("raw_path") or scope["path"].encode()).split(b"?", 1)[0]
    if text.percent_decoded(raw_path) is None:
        raise ApiError(400, VALIDATION, log_detail="path is not storable UTF-8")
    query = scope.get("query_string", b"")
    if query and text.percent_decoded(query) is None:
        raise ApiError(400, QUERY_BAD_VALUE, log_detail="query is not storable UTF-8")
    for name, value in scope["headers"]:
        if name in _READ_HEADERS and not text.header_is_acceptable(value):
            raise ApiError(400, VALIDATION, log_detail=f"header {name.decode()} is not text")


# The request id an OpenStack service passes on (oslo.context's form), so one operation can be
# followed across services' logs; anything else in the header is ignored.
_GLOBAL_REQUEST_ID = re.compile(
    r"^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)


def _note_global_request_id(headers: Headers, state: dict[str, Any]) -> None:
    inbound = headers.get("x-openstack-request-id")
    if inbound and _GLOBAL_REQUEST_ID.match(inbound):
        state["global_request_id"] = inbound


def _check_content_length(headers: Headers, limit: int) -> None:
    value = headers.get("content-length")
    if value is None:
        return
    try:
        length = int(value)
    except ValueError:
        raise ApiError(400, UNDEFINED, log_detail="content-length is not an integer") from None
    if length > limit:
        raise BodyTooLarge


async def _send_error(
    send: Send,
    status: int,
    code: str,
    request_id: str,
    extra_headers: dict[str, str],
    request_headers: Headers,
    extra: dict[str, str] | None = None,
) -> None:
    body, content_type = render(
        status, code, request_id, request_headers.get("accept"), extra=extra
    )
    raw = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ] + [(k.lower().encode(), v.encode()) for k, v in extra_headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class CorsMiddleware:
    """CORS for the configured origins, answered the way Placement's CORS layer answers it.

    A preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered here, 200 with
    no body, whatever the origin: it carries the CORS headers only when the origin and the method
    are allowed, and names back only the requested headers that are allowed. Any other request
    from an allowed origin gets Access-Control-Allow-Origin; one from elsewhere passes untouched.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        origins: list[str],
        methods: list[str],
        headers: list[str],
        expose: list[str],
    ) -> None:
        self.app = app
        self.origins = frozenset(origins)
        self.methods = frozenset(m.upper() for m in methods)
        self.headers = frozenset(h.lower() for h in headers)
        self.expose = ", ".join(expose)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(origin, headers, send)
            return
        if origin not in self.origins:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out["access-control-allow-origin"] = origin
                out["access-control-expose-headers"] = self.expose
                out.append("vary", "origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, origin: str, headers: Headers, send: Send) -> None:
        raw: list[tuple[bytes, bytes]] = [(b"content-length", b"0"), (b"vary", b"origin")]
        method = headers["access-control-request-method"].strip().upper()
        if origin in self.origins and method in self.methods:
            asked = [
                h.strip().lower()
                for h in headers.get("access-control-request-headers", "").split(",")
                if h.strip()
            ]
            granted = ", ".join(h for h in asked if h in self.headers)
            raw += [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-methods", method.encode()),
            ]
            if granted:
                raw.append((b"access-control-allow-headers", granted.encode()))
        await send({"type": "http.response.start", "status": 200, "headers": raw})
        await send({"type": "http.response.body", "body": b""})
