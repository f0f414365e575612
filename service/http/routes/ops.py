"""Operations: /healthz, /readyz, /ping, /metrics, /metadata; POST /admin/reload and the
shadow model's /admin/shadow."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import Request
from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector
from starlette.responses import Response

from service.codecs.metadata import model_metadata, render_shadow
from service.codecs.schemas import ReloadRequest, ShadowRequest
from service.core.errors import Forbidden
from service.core.model import ModelInfo, PerModel
from service.core.runtime import Runtime
from service.http.errors import Unauthorized
from service.http.responses import ORJSONResponse
from service.ops.metrics import CONTENT_TYPE, ProcessMetrics, exposition


def _metadata(info: ModelInfo) -> dict[str, Any]:
    return model_metadata(info).model_dump(mode="json")


class OpsHandlers:
    def __init__(self, runtime: Runtime, registry: CollectorRegistry, multiproc: Path | None,
                 process: ProcessMetrics, collectors: Sequence[Collector] = ()) -> None:
        self.runtime = runtime
        self.registry = registry
        self.multiproc = multiproc
        self.process = process
        self.collectors = collectors
        self.model_metadata = PerModel(_metadata)

    async def healthz(self) -> Response:
        """Alive: the process answers."""
        return ORJSONResponse({"status": "ok"})

    async def ping(self) -> Response:
        """Trivial, but counted and logged like any API request: the framework's ceiling."""
        return ORJSONResponse({"status": "ok"})

    async def readyz(self) -> Response:
        """Ready: a model is loaded, verified and warmed up."""
        return ORJSONResponse({"ready": True, "model": self.runtime.info().ref})

    async def metrics(self) -> Response:
        """Prometheus text format; with several workers, the sum over all of them (and each
        worker's own process_* series, labelled pid)."""
        self.process.refresh()
        return Response(exposition(self.registry, self.multiproc, self.collectors),
                        media_type=CONTENT_TYPE)

    async def metadata(self) -> Response:
        """The model served: fields, kinds, vocabulary sizes, task, metrics, version, sha256."""
        return ORJSONResponse(self.model_metadata(self.runtime.info()))


class AdminHandlers:
    """Only routed when AFM_ADMIN_TOKEN is set; otherwise the route does not exist (404)."""

    def __init__(self, runtime: Runtime, token: str) -> None:
        self.runtime = runtime
        self.expected = token.encode()

    def bearer(self, request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise Unauthorized("a bearer token is required")
        if not hmac.compare_digest(given.strip().encode(), self.expected):
            raise Forbidden("wrong bearer token")

    async def reload(self, body: ReloadRequest | None = None) -> Response:
        """Load, verify and warm up a bundle beside the current one, then swap atomically.
        Requests already running finish on the old model; a refused bundle changes nothing."""
        result = await self.runtime.reload(body.model_dir if body else None)
        return ORJSONResponse({"model": result.model, "sha256": result.sha256,
                               "previous": result.previous})

    async def get_shadow(self) -> Response:
        """The shadow model scored beside the live one, if any."""
        return ORJSONResponse(render_shadow(self.runtime.shadow_status()))

    async def set_shadow(self, body: ShadowRequest) -> Response:
        """Load and verify a bundle under the models root beside the live model; `fraction`
        of live requests are also scored by it after their answer, which it never delays or
        fails. A refused bundle changes nothing; a new one replaces the shadow model."""
        return ORJSONResponse(render_shadow(await self.runtime.set_shadow(body.model_dir,
                                                                          body.fraction)))

    async def delete_shadow(self) -> Response:
        """Stop shadowing (promoting it is a reload of its bundle, which stops it too)."""
        return ORJSONResponse(render_shadow(self.runtime.clear_shadow()))
