"""Operations: /healthz, /readyz, /ping, /metrics, /metadata and POST /admin/reload."""

from __future__ import annotations

import hmac
from enum import Enum
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from prometheus_client import CollectorRegistry
from starlette.responses import Response

from service.errors import Forbidden
from service.http.errors import ERROR_RESPONSES, Unauthorized
from service.http.responses import ORJSONResponse
from service.metrics import CONTENT_TYPE, ProcessMetrics, exposition
from service.runtime import Runtime
from service.schemas import ModelMetadata, ReadyStatus, ReloadRequest, ReloadResponse, Status

TAGS: list[str | Enum] = ["operations"]


def register(
    app: FastAPI, runtime: Runtime, registry: CollectorRegistry, multiproc: Path | None,
    process: ProcessMetrics,
) -> None:

    @app.get("/healthz", tags=TAGS, response_model=Status)
    async def healthz() -> Response:
        """Alive: the process answers."""
        return ORJSONResponse({"status": "ok"})

    @app.get("/ping", tags=TAGS, response_model=Status)
    async def ping() -> Response:
        """Trivial, but counted and logged like any API request: the framework's ceiling."""
        return ORJSONResponse({"status": "ok"})

    unready: dict[int | str, dict[str, Any]] = {503: ERROR_RESPONSES[503]}

    @app.get("/readyz", tags=TAGS, response_model=ReadyStatus, responses=unready)
    async def readyz() -> Response:
        """Ready: a model is loaded, verified and warmed up."""
        return ORJSONResponse({"ready": True, "model": runtime.info().ref})

    @app.get("/metrics", tags=TAGS, response_class=Response,
             responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text"}})
    async def metrics() -> Response:
        """Prometheus text format; with several workers, the sum over all of them (and each
        worker's own process_* series, labelled pid)."""
        process.refresh()
        return Response(exposition(registry, multiproc), media_type=CONTENT_TYPE)

    @app.get("/metadata", tags=TAGS, response_model=ModelMetadata, responses=unready)
    async def metadata() -> Response:
        """The model served: fields, kinds, vocabulary sizes, task, metrics, version, sha256."""
        return ORJSONResponse(runtime.info().metadata.model_dump(mode="json"))


def register_admin(app: FastAPI, runtime: Runtime, token: str) -> None:
    """Only mounted when AFM_ADMIN_TOKEN is set; otherwise the route does not exist (404)."""
    expected = token.encode()

    def bearer(request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise Unauthorized("a bearer token is required")
        if not hmac.compare_digest(given.strip().encode(), expected):
            raise Forbidden("wrong bearer token")

    @app.post("/admin/reload", tags=["admin"], dependencies=[Depends(bearer)],
              response_model=ReloadResponse, responses={
        s: ERROR_RESPONSES[s] for s in (400, 401, 403, 404, 413, 422, 503)
    })
    async def reload(body: ReloadRequest | None = None) -> Response:
        """Load, verify and warm up a bundle beside the current one, then swap atomically.
        Requests already running finish on the old model; a refused bundle changes nothing."""
        result = await runtime.reload(body.model_dir if body else None)
        return ORJSONResponse({"model": result.model, "sha256": result.sha256,
                               "previous": result.previous})
