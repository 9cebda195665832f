"""Reading request bodies and query strings the way Placement does."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from app.errors import VALIDATION, ApiError, bad_request

M = TypeVar("M", bound=BaseModel)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("an object names the same key twice")
    return document


async def json_body(request: Request, *, unique_keys: bool = False) -> Any:
    """The request's JSON document: 415 for another media type, 400 when it does not parse.

    `unique_keys`: an object that names one key twice is malformed (JSON parsers otherwise
    keep the last one silently), e.g. one consumer twice in POST /allocations.
    """
    content_type = request.headers.get("content-type")
    body = await request.body()
    if content_type is None:
        if body:
            raise bad_request("content-type header required")
        raise ApiError(415, log_detail="no content-type")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, log_detail=f"media type {content_type[:100]!r}")
    try:
        return json.loads(body, object_pairs_hook=_unique_pairs if unique_keys else None)
    except (ValueError, UnicodeDecodeError) as exc:
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
