"""The one rule for text that enters allot, wherever it enters (body, query, path, headers).

A string must be valid Unicode that PostgreSQL's text can store: no U+0000 (PostgreSQL
refuses it, SQLite keeps it, so the two databases would answer differently) and no lone
surrogate (not Unicode at all; no driver can encode it). Raw bytes must be valid UTF-8.
Everything else a field refuses (length, pattern) is its schema's business.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_NOT_HEADER_TEXT = re.compile(rb"[^\t\x20-\x7e]")


def is_storable(value: str) -> bool:
    return _UNSTORABLE.search(value) is None


def decoded(raw: bytes) -> str | None:
    """Bytes as text, or None when they are not valid UTF-8 or hold a character we refuse.
    (Python's UTF-8 codec already refuses encoded surrogates, as the standard says.)"""
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return value if is_storable(value) else None


def percent_decoded(raw: bytes) -> str | None:
    """A percent-encoded path or query string, decoded by the rule (None: refused).

    Servers decode these leniently (invalid UTF-8 becomes U+FFFD, %00 a NUL), so the rule is
    applied to the raw bytes the client sent.
    """
    return decoded(unquote_to_bytes(raw))


def header_is_acceptable(raw: bytes) -> bool:
    """A header value allot reads: visible ASCII, spaces and tabs only. Every header it
    reads (microversion, media types, tokens, request ids) is ASCII by definition."""
    return _NOT_HEADER_TEXT.search(raw) is None
