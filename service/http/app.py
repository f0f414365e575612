"""The HTTP transport: a FastAPI app on a server's runtime, with every route, the error
handlers and the one middleware; the server's lifecycle runs in the app's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Protocol

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CollectorRegistry

from service.codecs.metadata import server_version
from service.codecs.schemas import EncodeRequest, InferenceRequest, PredictRequest, V1Request
from service.core.runtime import Runtime
from service.http import routes
from service.http.body import openapi_components
from service.http.errors import install_handlers
from service.http.middleware import RequestMiddleware
from service.http.responses import ORJSONResponse
from service.http.routes.docs import DocsPages
from service.http.routes.oip import OIPHandlers
from service.http.routes.ops import AdminHandlers, OpsHandlers
from service.http.routes.predict import PredictHandlers
from service.http.routes.ui import UIPages
from service.http.routes.v1 import V1Handlers
from service.http.trim import HeapTrimmer, malloc_trim
from service.ops.logs import AccessLog
from service.ops.metrics import Metrics
from service.ops.settings import Settings

DESCRIPTION = (
    "Attentional Factorization Machines (Xiao et al., IJCAI 2017) served with onnxruntime: "
    "predictions with each score explained by the model's own attention over field pairs, "
    "the Open Inference Protocol (V2) and KServe's V1 protocol with its :explain verb, health, "
    "Prometheus metrics with drift monitoring, hot reload and shadow scoring of a candidate."
)


class Served(Protocol):
    """What the app needs of the server it is the HTTP transport of (`service.server`)."""

    settings: Settings
    registry: CollectorRegistry
    metrics: Metrics
    runtime: Runtime
    multiproc: Path | None

    def running(self) -> AbstractAsyncContextManager[None]: ...


def http_app(server: Served) -> FastAPI:
    settings, runtime, metrics = server.settings, server.runtime, server.metrics
    logged = settings.access_log and settings.log_level in ("debug", "info")
    access_log = AccessLog(settings.log_format) if logged else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with server.running():
                yield
        finally:
            if access_log is not None:
                access_log.flush()

    app = FastAPI(
        title="AFM serving", version=server_version(), description=DESCRIPTION,
        lifespan=lifespan, default_response_class=ORJSONResponse,
        docs_url=None, redoc_url=None,  # served offline by service.http.routes.docs
        # The service exports Prometheus metrics; FastAPI's OpenTelemetry hooks cost CPU
        # on every request even with no provider configured (docs/BENCHMARKS.md).
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.runtime = runtime
    app.state.metrics = metrics
    app.state.access_log = access_log
    install_handlers(app)
    admin = settings.admin_token
    routes.install(app, routes.api_routes(
        PredictHandlers(runtime), OIPHandlers(runtime, settings.max_instances), V1Handlers(runtime),
        OpsHandlers(runtime, server.registry, server.multiproc, metrics.process,
                    metrics.scrape_collectors),
        AdminHandlers(runtime, admin.get_secret_value()) if admin is not None else None,
        DocsPages(app.title, app.openapi_url or "/openapi.json"), UIPages(runtime),
    ))
    openapi_components(app, [PredictRequest, InferenceRequest, EncodeRequest, V1Request])
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "Authorization", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
        )
    # Added last, so outermost: it sees every request, CORS preflights included.
    trimmer = HeapTrimmer(settings.trim_after_bytes, malloc_trim(), metrics.heap_trims)
    app.add_middleware(
        RequestMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes,
        max_url_bytes=settings.max_url_bytes, trimmer=trimmer, routes=app.router.routes,
        access_log=access_log,
    )
    return app
