"""One pure ASGI middleware for every request: id, URL and body limits, metrics, log line,
500s, and a heap trim after large bodies.

Pure ASGI (not BaseHTTPMiddleware) because it sits on the hot path: it costs a few
microseconds a request. Health and metrics routes skip the metrics and the log line.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.http.errors import error_response, status_of, url_too_long
from service.http.trim import HeapTrimmer
from service.logs import ACCESS_LOGGER
from service.metrics import Metrics

UNTRACKED = frozenset({"/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"})
_VALID_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
access_log = logging.getLogger(ACCESS_LOGGER)
error_log = logging.getLogger("service.errors")


class RequestMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int, max_url_bytes: int,
                 trimmer: HeapTrimmer | None = None, routes: list[BaseRoute] | None = None) -> None:
        self.app = app
        self.routes = routes if routes is not None else []
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.max_url_bytes = max_url_bytes
        self.trimmer = trimmer
        self.trim_after_bytes = trimmer.min_bytes if trimmer is not None else 1 << 62
        # Labelled children cached: .labels() costs microseconds (few keys: routes x statuses).
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        request_id = _request_id(headers.get(b"x-request-id"))
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())
        status = 500
        started = False
        moved = 0  # bytes of request and response bodies

        async def send_with_id(message: Message) -> None:
            nonlocal status, started, moved
            if message["type"] == "http.response.start":
                started, status = True, message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            else:
                moved += len(message.get("body", b""))
            await send(message)

        tracked = scope["path"] not in UNTRACKED
        root_path = scope.get("root_path", "")  # a mount changes it while routing
        start = time.perf_counter()
        if tracked:
            self.metrics.in_flight.inc()
        try:
            receive, refusal, body_bytes = await self._limit(scope, headers, receive)
            moved += body_bytes
            app = refusal or self.app
            await app(scope, receive, send_with_id)
        except Exception:
            error_log.exception("unexpected failure", extra={"request": {"request_id": request_id}})
            if not started:
                response = error_response(500, f"internal error (request id {request_id})")
                await response(scope, receive, send_with_id)
            status = 500
        finally:
            if tracked:
                self.metrics.in_flight.dec()
                self._record(scope, status, time.perf_counter() - start, request_id, root_path)
            if moved >= self.trim_after_bytes and self.trimmer is not None:
                self.trimmer.after_request(moved)

    async def _limit(
        self, scope: Scope, headers: dict[bytes, bytes], receive: Receive
    ) -> tuple[Receive, ASGIApp | None, int]:
        """Refuse a URL or body over its limit before reading it; also the body's size.

        afm-serve's protocol refuses long URLs while reading them (`service.http.bounded_protocol`);
        this check holds under any other server. Bodies are refused from Content-Length
        when given, else (chunked) by reading at most the limit and stopping there."""
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

    def _record(self, scope: Scope, status: int, seconds: float, request_id: str,
                root_path: str) -> None:
        route = scope.get("route") or self._route_of({**scope, "root_path": root_path})
        template = getattr(route, "path", None) or "unmatched"
        key = (template, scope["method"], status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.metrics.requests.labels(template, scope["method"], str(status)),
                self.metrics.request_seconds.labels(template),
            )
        children[0].inc()
        children[1].observe(seconds)
        if access_log.isEnabledFor(logging.INFO):
            client = scope.get("client")
            access_log.info(
                "%s %s %d", scope["method"], scope["path"], status,
                extra={"request": {
                    "request_id": request_id, "method": scope["method"], "path": scope["path"],
                    "route": template, "status": status, "duration_ms": round(seconds * 1e3, 3),
                    "client": client[0] if client else None,
                }},
            )


    def _route_of(self, scope: Scope) -> BaseRoute | None:
        """The route a request the app never routed was for: a body refused here (413),
        or a route that does not record itself in the scope (mounts, FastAPI's
        /openapi.json). Only such requests pay for this walk."""
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return route
        return None


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {k: v for k, v in scope["headers"] if k in (b"x-request-id", b"content-length",
                                                       b"transfer-encoding")}


def _request_id(given: bytes | None) -> str:
    """The caller's X-Request-ID when it is a sane token, else a fresh one."""
    if given is not None:
        text = given.decode("latin-1")
        if _VALID_ID.fullmatch(text):
            return text
    return os.urandom(16).hex()


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Any:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
