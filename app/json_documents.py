"""Parsing a JSON request body with bounds, so that no document can cost more than its size.

Python's parser recurses once per nesting level (100,000 `[` exhaust the stack), accepts
`NaN` and `Infinity`, turns `1e999` into infinity, spends quadratic time on an integer of
thousands of digits, keeps the last of two equal keys silently, and decodes bytes with
`surrogatepass`. Each of these is refused here, before a schema or a database sees the
document.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from typing import Any

from app.text import is_storable

# Placement's deepest body (a reshape) nests six levels; anything far beyond is hostile.
MAX_DEPTH = 32
# Placement's numbers are 32-bit integers and ratios: a few digits. These bounds only keep a
# number's parsing cheap; each field's schema then bounds its value.
MAX_INTEGER_CHARS = 24
MAX_FLOAT_CHARS = 64

_BOM = b"\xef\xbb\xbf"
# A JSON string literal (escapes included), removed before counting brackets.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
# Only an escape can put a NUL or a lone surrogate into a parsed string (raw control
# characters are refused by the parser, encoded surrogates by the UTF-8 codec).
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


class MalformedDocument(ValueError):
    """The body is not a document allot accepts; the message says why (for the log only)."""


class UnstorableText(MalformedDocument):
    """A well-formed document with a string that breaks the rule for text (app.text)."""


def parse(body: bytes) -> Any:
    """The document in a UTF-8 JSON body; MalformedDocument if it breaks a rule."""
    if body.startswith(_BOM):
        raise MalformedDocument("a byte-order mark")
    _check_depth(body)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise UnstorableText("not UTF-8") from None
    try:
        document = _DECODER(text)
    except MalformedDocument:
        raise
    except ValueError as exc:  # json.JSONDecodeError, or int() past its digit limit
        raise MalformedDocument(f"not JSON: {exc}") from None
    if _SUSPECT_ESCAPE.search(body) and not _all_text_storable(document):
        raise UnstorableText("a string holds U+0000 or a lone surrogate")
    return document


def _check_depth(body: bytes) -> None:
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKET)
    if brackets.count(b"[") + brackets.count(b"{") <= MAX_DEPTH:
        return
    depth = max(itertools.accumulate(map(_STEP.__getitem__, brackets)))
    if depth > MAX_DEPTH:
        raise MalformedDocument(f"nested {depth} levels deep (at most {MAX_DEPTH})")


def _integer(literal: str) -> int:
    if len(literal) > MAX_INTEGER_CHARS:
        raise MalformedDocument(f"an integer of {len(literal)} characters")
    return int(literal)


def _float(literal: str) -> float:
    if len(literal) > MAX_FLOAT_CHARS:
        raise MalformedDocument(f"a number of {len(literal)} characters")
    value = float(literal)
    if not math.isfinite(value):
        raise MalformedDocument("a number too large for a double")
    return value


def _constant(name: str) -> Any:
    raise MalformedDocument(f"the non-JSON literal {name}")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise MalformedDocument("an object names the same key twice")
    return document


def _all_text_storable(document: Any) -> bool:
    # Iterative: the depth is bounded, but a walk needs no recursion either way.
    pending = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not is_storable(item):
                return False
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return True


_DECODER = json.JSONDecoder(
    parse_int=_integer,
    parse_float=_float,
    parse_constant=_constant,
    object_pairs_hook=_object,
).decode
