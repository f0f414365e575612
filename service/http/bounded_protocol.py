"""uvicorn's httptools protocol with a bounded request head and JSON refusals.

As shipped, uvicorn's httptools protocol reads a request line or header of any size
(docs/RELIABILITY.md: a huge header held the event loop for seconds and grew the process
for good) and answers what its parser refuses with a plain-text 400; httptools cannot
parse a URL over 65,535 bytes at all. This subclass refuses a URL over `max_url_bytes`
(414) and headers over `max_header_bytes` (431) while they are being read, and renders
every refusal, malformed requests included, as the service's `{"error": ...}`. Such
requests never reach the app: they have no request id and are not in the metrics.

The parser reports a URL piece by piece, but headers only once each is complete, so
the head is also bounded by the bytes read while it lasts: at most two reads (256 KB
each) more than the limits are ever held. Headers are summed exactly only when the
head's reads were larger than the limit, which a normal request's never are.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
from httptools import HttpParserError
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from service.core.errors import InvalidInput, ServiceError
from service.http.errors import error_body, headers_too_large, status_of, url_too_long

log = logging.getLogger(__name__)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, max_url_bytes: int, max_header_bytes: int,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_url_bytes = max_url_bytes
        self.max_header_bytes = max_header_bytes
        self._in_head = False  # from a request's first byte to the end of its headers
        self._read = 0  # bytes in the read being parsed
        self._head_most = 0  # head bytes read so far, at most (the read it began in, whole)
        self._head_least = 0  # ... and at least (not counting that read)

    def data_received(self, data: bytes) -> None:
        self._read = len(data)
        if self._in_head:  # the head began in an earlier read: all of this one is head
            self._head_most += self._read  # (unless the head ends in it: checked then)
            self._head_least += self._read
        super().data_received(data)
        if (self._in_head and self._head_least > self.max_url_bytes + self.max_header_bytes
                and not self.transport.is_closing()):
            self._refuse(headers_too_large(self.max_header_bytes))  # one header, still arriving

    def on_url(self, url: bytes) -> None:
        if not self._in_head:  # the request's first URL piece: its head has begun
            self._in_head = True
            self._head_most, self._head_least = self._read, 0
        self.url += url  # all uvicorn's own on_url does (inlined: this runs every request)
        if len(self.url) > self.max_url_bytes:
            raise url_too_long(self.max_url_bytes)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_most > self.max_header_bytes and self._header_bytes() > self.max_header_bytes:
            raise headers_too_large(self.max_header_bytes)
        super().on_headers_complete()

    def _header_bytes(self) -> int:
        """Exactly, once complete: only heads that may be over the limit are counted."""
        return sum(len(name) + len(value) for name, value in self.headers)

    def send_400_response(self, msg: str) -> None:
        """uvicorn calls this inside its `except HttpParserError`: the parser's reason, or
        the error a callback above raised (its context), is the exception being handled."""
        parse_error = sys.exc_info()[1]
        cause = parse_error.__context__ if parse_error is not None else None
        if isinstance(cause, ServiceError):
            self._refuse(cause)
            return
        reason = cause if isinstance(cause, HttpParserError) else parse_error  # not internals
        self._refuse(InvalidInput(f"malformed HTTP request: {reason or msg}"))

    def _refuse(self, error: ServiceError) -> None:
        self._in_head = False
        status = status_of(error)
        log.warning("request refused before the app: %d %s", status, error.message)
        body = orjson.dumps(error_body(error.message))
        head = [STATUS_LINE[status]]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [b"content-type: application/json\r\n",
                 b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n"]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
