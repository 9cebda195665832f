"""Bounds on a request's head (request line and headers), enforced as the bytes arrive.

uvicorn's httptools protocol enforces none: measured, it handed an application a 10 MB header
and 100,000 headers, buffering each in full first. This protocol refuses a head past its
bounds before it is buffered (414 for the request line, 431 for the headers) and closes the
connection; the body's own bound is ALLOT_MAX_BODY_BYTES (app.middleware). `allot serve`
runs uvicorn with it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.errors import UNDEFINED, render
from app.observability import request_id_var

# Placement's longest request lines (allocation candidates with many groups) are a few KiB;
# allot's own query bounds (app.query) hold each value to 8 KiB.
MAX_REQUEST_LINE_BYTES = 16 * 1024
# A Keystone or JWT token is a few KiB; everything else a client sends is short.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100

log = logging.getLogger("allot.access")


class _HeadTooLarge(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_open = True
        self._head_bytes = 0
        self._url_bytes = 0
        self._header_bytes = 0
        self._header_count = 0
        self._refusal: _HeadTooLarge | None = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_open = True
        self._head_bytes = self._url_bytes = self._header_bytes = self._header_count = 0

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        if self._url_bytes > MAX_REQUEST_LINE_BYTES:
            self._refuse(414, f"request line over {MAX_REQUEST_LINE_BYTES} bytes")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_bytes += len(name) + len(value)
        if self._header_count > MAX_HEADERS:
            self._refuse(431, f"more than {MAX_HEADERS} headers")
        if self._url_bytes + self._header_bytes > MAX_HEAD_BYTES:
            self._refuse(431, f"request head over {MAX_HEAD_BYTES} bytes")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_open = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # refused: the connection is closing
        if self._head_open:
            self._head_bytes += len(data)
        super().data_received(data)
        # A head arriving in several chunks is refused before more than one chunk past the
        # bound is buffered (a chunk that completes it, and may carry a body, is not counted:
        # the callbacks measure that one).
        if self._refusal is None and self._head_open and self._head_bytes > MAX_HEAD_BYTES:
            self._answer(_HeadTooLarge(431, f"request head over {MAX_HEAD_BYTES} bytes"))

    def send_400_response(self, msg: str) -> None:
        # A callback's exception reaches uvicorn as a parser error, answered here.
        if self._refusal is not None:
            self._answer(self._refusal)
        else:
            super().send_400_response(msg)

    def _refuse(self, status: int, reason: str) -> None:
        self._refusal = _HeadTooLarge(status, reason)
        raise self._refusal

    def _answer(self, refusal: _HeadTooLarge) -> None:
        self._refusal = refusal
        request_id = f"req-{uuid.uuid4()}"
        contextvars.copy_context().run(_log_refusal, request_id, refusal)
        body, media_type = render(refusal.status, UNDEFINED, request_id, None)
        head = (
            f"HTTP/1.1 {refusal.status} {_REASONS[refusal.status]}\r\n"
            f"content-type: {media_type}\r\ncontent-length: {len(body)}\r\n"
            f"openstack-request-id: {request_id}\r\nx-openstack-request-id: {request_id}\r\n"
            "connection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()


def _log_refusal(request_id: str, refusal: _HeadTooLarge) -> None:
    request_id_var.set(request_id)  # in a context of its own: no request task is running
    log.warning(
        "request head refused",
        extra={"status": refusal.status, "error_detail": str(refusal)},
    )


_REASONS = {414: "URI Too Long", 431: "Request Header Fields Too Large"}

# What uvicorn is told to run (`http=`), by import string, so that every worker process uses it.
PROTOCOL = f"{__name__}:{BoundedHttpToolsProtocol.__name__}"
