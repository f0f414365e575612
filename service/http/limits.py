"""Request limits applied as a request arrives: a URL (414) or body (413) over its limit
is refused before it is read.

afm-serve's protocol refuses long URLs while reading them
(`service.http.bounded_protocol`); the URL check here holds under any other server.
Bodies are refused from Content-Length when given, else (chunked) by reading at most the
limit and stopping there.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope

from service.http.errors import error_response, status_of, url_too_long


class RequestLimits:
    def __init__(self, max_body_bytes: int, max_url_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes
        self.max_url_bytes = max_url_bytes

    async def check(
        self, scope: Scope, headers: dict[bytes, bytes], receive: Receive
    ) -> tuple[Receive, ASGIApp | None, int]:
        """-> the receive to use, the refusal to answer with (None: within the limits), and
        the body's size in bytes. `headers` holds content-length and transfer-encoding."""
        query = scope.get("query_string", b"")
        url_bytes = len(scope.get("raw_path") or scope["path"]) + (len(query) + 1 if query else 0)
        if url_bytes > self.max_url_bytes:
            error = url_too_long(self.max_url_bytes)
            return receive, error_response(status_of(error), error.message), 0
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return receive, None, 0
            if int(length) > self.max_body_bytes:
                return receive, self._too_large(), 0
            return receive, None, int(length)
        if b"transfer-encoding" not in headers:
            return receive, None, 0
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return _replay([message], receive), None, size
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return receive, self._too_large(), size
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        whole = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        return _replay([whole], receive), None, size

    def _too_large(self) -> ASGIApp:
        return error_response(413, f"request body larger than {self.max_body_bytes} bytes")


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Any:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
