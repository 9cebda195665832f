"""The request head's bounds, as `allot serve` enforces them on the wire (app.http_limits):
a request line past 16 KiB is 414, more than 100 headers or a head past 64 KiB is 431, each
with the generic envelope and the connection closed; what fits is served as usual."""

from __future__ import annotations

import contextlib
import json
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.http_limits import MAX_HEAD_BYTES, MAX_HEADERS, MAX_REQUEST_LINE_BYTES
from tests.concurrency.servers import allot_serve, own_postgres
from tests.conftest import BACKENDS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=BACKENDS)
async def served(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, int]]:
    with tempfile.TemporaryDirectory() as tmp:
        async with contextlib.AsyncExitStack() as stack:
            if request.param == "sqlite":
                url = f"sqlite+aiosqlite:///{Path(tmp) / 'allot.db'}"
            else:
                url = await stack.enter_async_context(own_postgres("http_limits"))
            log = Path(tmp) / "serve.log"
            with allot_serve(url, workers=1, log=log, ports=range(8630, 8640)) as base:
                host, port = base.removeprefix("http://").split(":")
                yield host, int(port)


def _exchange(address: tuple[str, int], head: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send a raw request head; the status, headers and body of the answer."""
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    raw_head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = raw_head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, body


def _get(path: str = "/healthz", headers: bytes = b"") -> bytes:
    return (
        b"GET "
        + path.encode()
        + b" HTTP/1.1\r\nHost: allot\r\n"
        + headers
        + (b"Connection: close\r\n\r\n")
    )


def _assert_refused(answer: tuple[int, dict[str, str], bytes], status: int) -> None:
    code, headers, body = answer
    assert code == status
    assert headers["connection"] == "close"
    error = json.loads(body)["errors"][0]
    assert (error["status"], error["code"]) == (status, "placement.undefined_code")
    assert error["request_id"] == headers["openstack-request-id"]


def test_a_request_line_past_its_bound_is_414(served: tuple[str, int]) -> None:
    too_long = "/healthz?" + "a" * MAX_REQUEST_LINE_BYTES
    _assert_refused(_exchange(served, _get(too_long)), 414)


def test_too_many_headers_is_431(served: tuple[str, int]) -> None:
    many = b"".join(b"X-Extra-%d: 1\r\n" % i for i in range(MAX_HEADERS + 1))
    _assert_refused(_exchange(served, _get(headers=many)), 431)


def test_a_head_past_its_bound_is_431(served: tuple[str, int]) -> None:
    one_huge_header = b"X-Huge: " + b"a" * (MAX_HEAD_BYTES + 1) + b"\r\n"
    _assert_refused(_exchange(served, _get(headers=one_huge_header)), 431)


def test_a_head_sent_in_pieces_is_refused_before_it_is_all_buffered(
    served: tuple[str, int],
) -> None:
    """A slow client's head is counted as it arrives: the server answers 431 once the bound
    is passed, in the middle of one header the client has most of a megabyte still to send."""
    piece = b"a" * 16_000
    with socket.create_connection(served, timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: allot\r\nX-Endless: ")
        sent, answer = 0, b""
        while not answer and sent < 1_000_000:
            sock.sendall(piece)
            sent += len(piece)
            sock.settimeout(0.1)
            with contextlib.suppress(TimeoutError):
                answer = sock.recv(65536)
        sock.settimeout(10)
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    assert sent < 2 * MAX_HEAD_BYTES


def test_what_fits_is_served(served: tuple[str, int]) -> None:
    # Just within every bound at once: a long query, many headers, a large (token-sized) one.
    path = "/healthz?" + "a" * (MAX_REQUEST_LINE_BYTES - 100)
    headers = b"".join(b"X-Extra-%d: 1\r\n" % i for i in range(MAX_HEADERS - 4))
    headers += b"X-Token-Sized: " + b"a" * 8_000 + b"\r\n"
    status, _, body = _exchange(served, _get(path, headers))
    assert (status, json.loads(body)) == (200, {"status": "ok"})
