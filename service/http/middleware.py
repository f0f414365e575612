"""The one ASGI middleware every request passes: its limits (`limits`), its telemetry
(`telemetry`: id, metrics, log line), a JSON 500 for an unexpected failure, and a heap
trim after large bodies (`trim`).

Pure ASGI (not BaseHTTPMiddleware), and one layer rather than one a concern: each layer
would add a call and a wrapped `send` to every request on the hot path.
"""

from __future__ import annotations

import logging
import time

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.http.errors import error_response
from service.http.limits import RequestLimits
from service.http.telemetry import UNTRACKED, Telemetry, request_id
from service.http.trim import HeapTrimmer
from service.ops.logs import AccessLog
from service.ops.metrics import Metrics, add

error_log = logging.getLogger("service.core.errors")


class RequestMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int, max_url_bytes: int,
                 trimmer: HeapTrimmer | None = None, routes: list[BaseRoute] | None = None,
                 access_log: AccessLog | None = None) -> None:
        self.app = app
        self.in_flight = metrics.in_flight
        self.limits = RequestLimits(max_body_bytes, max_url_bytes)
        self.telemetry = Telemetry(metrics, routes if routes is not None else [], access_log)
        self.trimmer = trimmer
        self.trim_after_bytes = trimmer.min_bytes if trimmer is not None else 1 << 62

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        rid = request_id(headers.get(b"x-request-id"))
        scope.setdefault("state", {})["request_id"] = rid
        id_header = (b"x-request-id", rid.encode())
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
            add(self.in_flight, 1)
        try:
            receive, refusal, body_bytes = await self.limits.check(scope, headers, receive)
            moved += body_bytes
            app = refusal or self.app
            await app(scope, receive, send_with_id)
        except Exception:
            error_log.exception("unexpected failure", extra={"request": {"request_id": rid}})
            if not started:
                response = error_response(500, f"internal error (request id {rid})")
                await response(scope, receive, send_with_id)
            status = 500
        finally:
            if tracked:
                add(self.in_flight, -1)
                self.telemetry.record(scope, status, time.perf_counter() - start, rid, root_path)
            if moved >= self.trim_after_bytes and self.trimmer is not None:
                self.trimmer.after_request(moved)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {k: v for k, v in scope["headers"] if k in (b"x-request-id", b"content-length",
                                                       b"transfer-encoding")}
