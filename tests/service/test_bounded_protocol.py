"""afm-serve's HTTP protocol: URLs and headers over their limits are refused while being
read, every refusal is a JSON error, and requests within the limits reach the app."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from service.http.bounded_protocol import BoundedHttpToolsProtocol

MAX_URL = 1024
MAX_HEADERS = 4096
PIECE = 1000


class Transport:
    """What the protocol needs of an asyncio transport, recording what it is sent."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 40000)}.get(name)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def echo_app(scope: Any, receive: Any, send: Any) -> None:
    """Reads the whole body, answers 200 with its length."""
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"%d" % size})


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def connect(loop: asyncio.AbstractEventLoop) -> tuple[BoundedHttpToolsProtocol, Transport]:
    config = Config(app=echo_app, log_config=None, lifespan="off")
    protocol = BoundedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={},
                                        _loop=loop, max_url_bytes=MAX_URL,
                                        max_header_bytes=MAX_HEADERS)
    transport = Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, transport


def feed(loop: asyncio.AbstractEventLoop, protocol: BoundedHttpToolsProtocol,
         pieces: list[bytes]) -> int:
    """Feed pieces until the connection is closed; how many bytes were fed."""
    fed = 0
    for piece in pieces:
        if protocol.transport.is_closing():
            break
        protocol.data_received(piece)
        fed += len(piece)
        loop.run_until_complete(asyncio.sleep(0.01))  # let the app answer
    return fed


def answer(transport: Transport) -> tuple[int, dict[str, str]]:
    head, _, body = transport.written.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head
    return int(head.split(b" ")[1]), json.loads(body)


def split(data: bytes) -> list[bytes]:
    return [data[i:i + PIECE] for i in range(0, len(data), PIECE)]


def test_a_url_over_the_limit_is_refused_with_414_while_it_arrives(
    loop: asyncio.AbstractEventLoop,
) -> None:
    protocol, transport = connect(loop)
    request = b"GET /explain?f0=" + b"x" * 1_000_000 + b" HTTP/1.1\r\nhost: a\r\n\r\n"
    fed = feed(loop, protocol, split(request))
    assert answer(transport) == (414, {"error": f"URL longer than {MAX_URL} bytes"})
    assert transport.closed and fed <= MAX_URL + PIECE


@pytest.mark.parametrize("headers", [
    [b"x-big: " + b"x" * 1_000_000],  # one header that never ends
    [b"x-h%d: 0123456789" % i for i in range(10_000)],  # many that do
])
def test_headers_over_the_limit_are_refused_with_431_while_they_arrive(
    loop: asyncio.AbstractEventLoop, headers: list[bytes],
) -> None:
    protocol, transport = connect(loop)
    request = b"GET /explain HTTP/1.1\r\nhost: a\r\n" + b"\r\n".join(headers) + b"\r\n\r\n"
    fed = feed(loop, protocol, split(request))
    assert answer(transport) == (431, {"error": f"request headers larger than {MAX_HEADERS} bytes"})
    assert transport.closed and fed <= MAX_URL + MAX_HEADERS + 2 * PIECE


def test_a_head_over_the_limit_in_one_read_is_refused(loop: asyncio.AbstractEventLoop) -> None:
    protocol, transport = connect(loop)
    feed(loop, protocol, [b"GET / HTTP/1.1\r\nx-big: " + b"x" * MAX_HEADERS + b"\r\n\r\n"])
    assert answer(transport)[0] == 431


@pytest.mark.parametrize(("request_bytes", "reason"), [
    (b"GE\x01T / HTTP/1.1\r\n\r\n", "Invalid method encountered"),
    (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", "Invalid header token"),
    (b"GET / HTTP/7.1\r\n\r\n", "Invalid HTTP version"),
])
def test_malformed_requests_get_a_json_400_naming_the_parser_reason(
    loop: asyncio.AbstractEventLoop, request_bytes: bytes, reason: str,
) -> None:
    protocol, transport = connect(loop)
    feed(loop, protocol, [request_bytes])
    assert answer(transport) == (400, {"error": f"malformed HTTP request: {reason}"})
    assert transport.closed


def test_requests_within_the_limits_reach_the_app_one_after_another(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """At the limits, in small reads, with a large body whose last read also starts the
    next request: nothing is counted against the head that is not part of it."""
    protocol, transport = connect(loop)
    url = b"/" + b"u" * (MAX_URL - 1)
    header = b"x-big: " + b"h" * (MAX_HEADERS - len("x-big") - len("host") - len("a"))
    first = b"GET " + url + b" HTTP/1.1\r\nhost: a\r\n" + header + b"\r\n\r\n"
    body = b"b" * 50 * PIECE
    second = (b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: %d\r\n\r\n" % len(body)) + body
    third = b"GET / HTTP/1.1\r\nhost: a\r\n" + header + b"\r\n\r\n"
    pieces = [*split(first), second[:-20 * PIECE], second[-20 * PIECE:] + third[:2],
              *split(third[2:])]
    assert feed(loop, protocol, pieces) == len(first) + len(second) + len(third)
    assert not transport.closed
    assert transport.written.count(b"HTTP/1.1 200 OK") == 3
    assert b"\r\n%d\r\n" % len(body) in transport.written  # the app read the whole body


@pytest.mark.parametrize(("url", "header", "status"), [
    (MAX_URL + 1, 1, 414), (MAX_URL, MAX_HEADERS - len("x-big") + 1, 431),
])
def test_one_byte_over_a_limit_is_refused(loop: asyncio.AbstractEventLoop, url: int, header: int,
                                          status: int) -> None:
    protocol, transport = connect(loop)
    request = b"GET /" + b"u" * (url - 1) + b" HTTP/1.1\r\nx-big: " + b"h" * header + b"\r\n\r\n"
    feed(loop, protocol, [request])
    assert answer(transport)[0] == status
