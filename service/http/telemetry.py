"""What is recorded of each request: its id, the request metrics and the access log line.

Health and metrics routes (`UNTRACKED`) are neither counted nor logged.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from service.core import origin
from service.core.origin import Origin, Route
from service.ops.logs import AccessLog
from service.ops.metrics import Metrics, add, observe

UNTRACKED = frozenset({"/", "/healthz", "/readyz", "/metrics", "/v2/health/live",
                       "/v2/health/ready"})


def request_id(given: bytes | None) -> str:
    """The caller's X-Request-ID when it is a sane token, else a fresh one."""
    return origin.request_id(None if given is None else given.decode("latin-1"))


def origin_of(request: Request, route: Route) -> Origin:
    """The request's id (the X-Request-ID the middleware settled and answers with) and route."""
    return Origin(request.scope["state"]["request_id"], route)


class Telemetry:
    def __init__(self, metrics: Metrics, routes: list[BaseRoute],
                 access_log: AccessLog | None = None) -> None:
        """`access_log`: None, no request lines."""
        self.metrics = metrics
        self.routes = routes
        self.access_log = access_log
        # Labelled children cached: .labels() is slow next to the rest of a request, and
        # there are few keys (routes x statuses).
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def record(self, scope: Scope, status: int, seconds: float, request_id: str,
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
        add(children[0], 1)
        observe(children[1], seconds)
        if self.access_log is not None:
            client = scope.get("client")
            method, path = scope["method"], scope["path"]
            self.access_log.write(f"{method} {path} {status}", {
                "request_id": request_id, "method": method, "path": path, "route": template,
                "status": status, "duration_ms": round(seconds * 1e3, 3),
                "client": client[0] if client else None,
            })

    def _route_of(self, scope: Scope) -> BaseRoute | None:
        """The route a request the app never routed was for: a body refused by the limits
        (413), or a route that does not record itself in the scope (mounts, FastAPI's
        /openapi.json). Only such requests pay for this walk."""
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return route
        return None
