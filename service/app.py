"""`create_app(settings, registry)`: everything passed in, the model loaded in the lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CollectorRegistry

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
from service.http.trim import HeapTrimmer, malloc_trim
from service.metadata import server_version
from service.metrics import Metrics, multiprocess_dir, reap_dead_workers, refresh_process_metrics
from service.model_choice import SharedChoice
from service.process import configure_process, freeze_startup_objects
from service.runtime import Runtime
from service.schemas import EncodeRequest, InferenceRequest, PredictRequest
from service.settings import Settings

FOLLOW_INTERVAL_S = 0.5
DESCRIPTION = (
    "Attentional Factorization Machines (Xiao et al., IJCAI 2017) served with onnxruntime: "
    "predictions with each score explained by the model's own attention over field pairs, "
    "the Open Inference Protocol (V2), health, Prometheus metrics and hot reload."
)


def create_app(settings: Settings, registry: CollectorRegistry | None = None,
               after_start: Callable[[], None] | None = None) -> FastAPI:
    """`after_start` runs once the model is loaded, before the first request."""
    registry = registry if registry is not None else CollectorRegistry()
    metrics = Metrics(registry)
    shared = SharedChoice(settings.run_dir) if settings.run_dir else None
    runtime = Runtime(settings, metrics, shared)
    multiproc = multiprocess_dir()
    grpc_service = None
    if settings.grpc_port is not None:  # grpcio is imported only when gRPC is on
        from service.grpc.server import GrpcService

        grpc_service = GrpcService(settings, runtime, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if multiproc is not None:
            reap_dead_workers(multiproc)
        await runtime.start()
        if grpc_service is not None:  # same event loop and runtime as the REST routes
            await grpc_service.start()
            app.state.grpc_port = grpc_service.port
        if after_start is not None:
            after_start()
        tasks = [asyncio.create_task(runtime.follow(FOLLOW_INTERVAL_S))] if shared else []
        if multiproc is not None:
            tasks.append(asyncio.create_task(refresh_process_metrics(metrics.process)))
        yield
        for task in tasks:
            task.cancel()
        if grpc_service is not None:
            await grpc_service.stop()
        await runtime.stop()

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
    install_handlers(app)
    admin = settings.admin_token
    routes.install(app, routes.api_routes(
        PredictHandlers(runtime), OIPHandlers(runtime, settings.max_instances),
        OpsHandlers(runtime, registry, multiproc, metrics.process),
        AdminHandlers(runtime, admin.get_secret_value()) if admin is not None else None,
        DocsPages(app.title, app.openapi_url or "/openapi.json"), UIPages(runtime),
    ))
    openapi_components(app, [PredictRequest, InferenceRequest, EncodeRequest])
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
    )
    return app


def app_from_env() -> FastAPI:
    """The uvicorn factory each worker process calls: settings from AFM_* variables."""
    settings = Settings()  # type: ignore[call-arg]  # model_dir comes from the environment
    configure_process(settings)
    return create_app(settings, after_start=freeze_startup_objects)
