"""Every input the API accepts is bounded (DESIGN section 8), as its OpenAPI document says.

One test per operation, built from the app's own document, so a route added later is checked
too and a failure names the route: every string in a request body or query parameter has a
maxLength (or is an enum/const/uuid), every integer a minimum and a maximum, every array a
maxItems, and every object forbids unknown keys or bounds how many it takes.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from app.main import create_app
from tests.conftest import test_settings as settings_for

_DOCUMENT = create_app(settings_for("sqlite+aiosqlite://")).openapi()
_METHODS = ("get", "put", "post", "patch", "delete")
_BOUNDED_FORMATS = {"uuid", "date-time", "date"}
_ANCHORED_FINITE = re.compile(r"^\^.*\$$")
_OPEN_ENDED = re.compile(r"[*+]|\{\d*,\}")


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        resolved: dict[str, Any] = _DOCUMENT["components"]["schemas"][ref.rsplit("/", 1)[1]]
        return resolved
    return schema


def _bounded_string(schema: dict[str, Any]) -> bool:
    if "maxLength" in schema or schema.get("format") in _BOUNDED_FORMATS:
        return True
    # An anchored pattern with no open-ended repetition, e.g. ^(true|false)$, is bounded too.
    pattern = schema.get("pattern", "")
    return bool(_ANCHORED_FINITE.match(pattern)) and not _OPEN_ENDED.search(pattern)


def _problems(schema: dict[str, Any], where: str, seen: frozenset[str] = frozenset()) -> list[str]:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        if ref in seen:  # recursive schema: already being checked
            return []
        seen = seen | {ref}
    schema = _resolve(schema)
    found: list[str] = []
    for combinator in ("anyOf", "oneOf", "allOf"):
        for index, part in enumerate(schema.get(combinator, [])):
            found += _problems(part, f"{where}/{combinator}/{index}", seen)
    if "enum" in schema or "const" in schema:
        return found
    kind = schema.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind}
    if "string" in kinds and not _bounded_string(schema):
        found.append(f"{where}: string without maxLength")
    if kinds & {"integer", "number"}:
        if "maximum" not in schema and "exclusiveMaximum" not in schema:
            found.append(f"{where}: {kind} without maximum")
        if "minimum" not in schema and "exclusiveMinimum" not in schema:
            found.append(f"{where}: {kind} without minimum")
    if "array" in kinds:
        if "maxItems" not in schema:
            found.append(f"{where}: array without maxItems")
        if "items" in schema:
            found += _problems(schema["items"], f"{where}/items", seen)
    if "object" in kinds or "properties" in schema:
        # Closed (no unknown keys), or a map with a bounded number of keys.
        extra = schema.get("additionalProperties")
        if extra is not False and "maxProperties" not in schema:
            found.append(f"{where}: object accepts any number of unknown keys")
        if isinstance(extra, dict):
            found += _problems(extra, f"{where}/additionalProperties", seen)
        for name, prop in schema.get("properties", {}).items():
            found += _problems(prop, f"{where}/{name}", seen)
        for pattern, prop in schema.get("patternProperties", {}).items():
            found += _problems(prop, f"{where}/{pattern}", seen)
    return found


def _operations() -> list[Any]:
    return [
        pytest.param(path, method, operation, id=f"{method.upper()} {path}")
        for path, operations in _DOCUMENT["paths"].items()
        for method, operation in operations.items()
        if method in _METHODS
    ]


@pytest.mark.parametrize(("path", "method", "operation"), _operations())
def test_every_input_is_bounded(path: str, method: str, operation: dict[str, Any]) -> None:
    problems: list[str] = []
    for parameter in operation.get("parameters", []):
        if parameter.get("in") in ("query", "path"):
            where = f"{parameter['in']}:{parameter['name']}"
            problems += _problems(parameter.get("schema", {}), where)
    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None:
        problems += _problems(body.get("schema", {}), "body")
    assert problems == [], f"{method.upper()} {path} accepts unbounded input:\n" + "\n".join(
        problems
    )


def test_the_walk_sees_the_api() -> None:
    # Guard against a vacuous pass: the document has the routes and at least one body.
    operations = _operations()
    assert len(operations) >= 8
    assert any("requestBody" in p.values[2] for p in operations)
