"""The app factories: `create_app(settings, registry)`, a server with its HTTP transport
and everything passed in (tests build many), and `app_from_env`, the one uvicorn calls in
each worker process of `afm-serve`."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from service.http.app import http_app
from service.ops.process import configure_process, freeze_startup_objects
from service.ops.settings import Settings
from service.server import Server


def create_app(settings: Settings, registry: CollectorRegistry | None = None,
               after_start: Callable[[], None] | None = None) -> FastAPI:
    """`after_start` runs once the model is loaded, before the first request. The server
    (`app.state.server`) starts with the app's lifespan, gRPC too when AFM_GRPC_PORT is set."""
    server = Server(settings, registry, after_start)
    app = http_app(server)
    app.state.server = server
    return app


def app_from_env() -> FastAPI:
    """The uvicorn factory each worker process calls: settings from AFM_* variables."""
    settings = Settings()  # type: ignore[call-arg]  # model_dir comes from the environment
    configure_process(settings)
    return create_app(settings, after_start=freeze_startup_objects)
