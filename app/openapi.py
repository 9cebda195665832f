"""The OpenAPI document: bearer auth, the microversion header, and Placement's error envelope."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from app import microversion

PUBLIC_PATHS = {"/", "/healthz", "/readyz"}

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["errors"],
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["status", "title", "detail", "code", "request_id"],
                "properties": {
                    "status": {"type": "integer"},
                    "title": {"type": "string"},
                    "detail": {"type": "string"},
                    "code": {"type": "string"},
                    "request_id": {"type": "string"},
                    "source": {
                        "type": "object",
                        "properties": {"pointer": {"type": "string"}},
                    },
                },
            },
        }
    },
}
_ERROR_RESPONSE = {
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
}
_COMMON_ERRORS = {
    "400": "Bad request: malformed body, query or microversion",
    "406": "Unsupported microversion or Accept",
    "429": "Rate limited",
    "503": "Database unavailable",
}
_PROTECTED_ERRORS = {"401": "Missing or invalid token", "403": "Not allowed by policy"}
_WRITE_ERRORS = {
    "409": "Conflict (generation, in use, duplicate)",
    "413": "Body too large",
    "415": "Not JSON",
}

VERSION_PARAMETER = {
    "name": "OpenStack-API-Version",
    "in": "header",
    "required": False,
    "description": (
        f"Microversion, e.g. `placement {microversion.MAX}` or `placement latest`; "
        f"absent means {microversion.MIN}. Bodies and responses are documented as the "
        "latest microversion has them."
    ),
    "schema": {"type": "string", "pattern": r"^placement (latest|1\.\d+)$"},
}


def _document(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = _ERROR_SCHEMA
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            _decorate(path, method, operation)
    return schema


def _decorate(path: str, method: str, operation: dict[str, Any]) -> None:
    params = operation.setdefault("parameters", [])
    if not any(p.get("name") == VERSION_PARAMETER["name"] for p in params):
        params.append(VERSION_PARAMETER)
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)  # validation failures are 400, as in Placement
    errors = dict(_COMMON_ERRORS)
    if path not in PUBLIC_PATHS:
        operation["security"] = [{"bearer": []}]
        errors |= _PROTECTED_ERRORS
        errors["404"] = "Not found, or not visible to the caller"
    if method in ("put", "post", "delete"):
        errors |= _WRITE_ERRORS
    for status, description in errors.items():
        responses.setdefault(status, {"description": description, **_ERROR_RESPONSE})


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline(item, defs) for item in schema]
    return schema


def json_body_doc(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """`openapi_extra` for a route that validates its JSON body itself (per microversion)."""
    schema = model.model_json_schema()
    inlined = _inline(schema, schema.get("$defs", {}))
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": inlined}},
        }
    }
