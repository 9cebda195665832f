"""Reading request bodies and query strings the way Placement does."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from fastapi.datastructures import DefaultPlaceholder
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from app import json_documents
from app.errors import UNDEFINED, VALIDATION, ApiError, bad_request

M = TypeVar("M", bound=BaseModel)

# Version discovery and the probes answer whatever the client accepts; Placement checks the
# Accept header of its API's reads only.
_ANY_ACCEPT = frozenset({"/", "/healthz", "/readyz"})
_JSON_RANGES = frozenset({"application/json", "application/*", "*/*"})


def _returns_json(route: object) -> bool:
    if not isinstance(route, APIRoute) or route.path in _ANY_ACCEPT:
        return False
    response_class = route.response_class
    if isinstance(response_class, DefaultPlaceholder):
        response_class = response_class.value
    return isinstance(response_class, type) and issubclass(response_class, JSONResponse)


async def accepts_json(request: Request) -> None:
    """An app-wide dependency: a read whose Accept header rules out JSON is 406.

    It runs once the route is known, so an unknown path is still 404 and a wrong method 405,
    whatever the client accepts (as in Placement); writes and bodiless reads do not check.
    """
    accept = request.headers.get("accept")
    if not accept or request.method != "GET" or not _returns_json(request.scope.get("route")):
        return
    ranges = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    if not ranges & _JSON_RANGES:
        raise ApiError(406, UNDEFINED, log_detail=f"accept {accept[:100]!r}")


def _charset(content_type: str) -> str | None:
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


async def json_body(request: Request) -> Any:
    """The request's JSON document: 415 for another media type, 400 when it does not parse
    or breaks a rule of app.json_documents (depth, numbers, duplicate keys, text)."""
    content_type = request.headers.get("content-type")
    body = await request.body()
    if content_type is None:
        if body:
            raise bad_request("content-type header required")
        raise ApiError(415, log_detail="no content-type")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, log_detail=f"media type {content_type[:100]!r}")
    if _charset(content_type) not in (None, "utf-8"):
        raise bad_request(f"charset in {content_type[:100]!r}")  # JSON is UTF-8 (RFC 8259)
    try:
        return json_documents.parse(body)
    except json_documents.UnstorableText as exc:
        raise bad_request(str(exc), VALIDATION) from None
    except json_documents.MalformedDocument as exc:
        raise bad_request(f"malformed JSON: {exc}") from None


def validate(model: type[M], document: Any) -> M:
    """Validate a parsed document against a schema; 400 with a pointer to the first problem."""
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        errors = exc.errors()
        loc = errors[0].get("loc", ()) if errors else ()
        pointer = "/" + "/".join(str(p) for p in loc) if loc else None
        summary = "; ".join(
            f"{'/'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in errors[:5]
        )
        raise ApiError(400, VALIDATION, log_detail=summary, pointer=pointer) from None


def href(request: Request, path: str) -> str:
    """A link to one of our resources, under whatever prefix we are mounted (e.g. /placement)."""
    return f"{request.scope.get('root_path', '')}{path}"


def location_url(request: Request, path: str) -> str:
    """A Location header: an absolute URL under our prefix, as Placement sends it."""
    return str(request.base_url).rstrip("/") + path
