"""Every route of the API in one table: method, path, handler, response model, errors.

Handlers are methods of small classes given what they need (`predict`, `oip`, `v1`, `ops`,
`docs`, `ui`); they validate, delegate to the runtime and render. This module is the only place
a route is declared. Order matters: a request is tried against each route in turn, so the
hot routes come first (docs/BENCHMARKS.md) and the pages' asset mounts come last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from fastapi import Depends, FastAPI
from starlette.responses import Response
from starlette.routing import BaseRoute

from service.codecs.schemas import (
    EncodeRequest,
    EncodeResponse,
    ExplainResponse,
    ImportanceResponse,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    OIPModelMetadata,
    PredictRequest,
    PredictResponse,
    ReadyStatus,
    ReloadResponse,
    ServerMetadata,
    ShadowResponse,
    Status,
    V1ExplainResponse,
    V1Live,
    V1ModelReady,
    V1Models,
    V1PredictResponse,
    V1Request,
)
from service.http.body import json_body
from service.http.errors import ERROR_RESPONSES
from service.http.routes.docs import OAUTH2_REDIRECT_URL, DocsPages, assets
from service.http.routes.oip import OIPHandlers
from service.http.routes.ops import AdminHandlers, OpsHandlers
from service.http.routes.predict import PredictHandlers
from service.http.routes.ui import UIPages
from service.http.routes.ui import assets as ui_assets
from service.http.routes.v1 import V1Handlers
from service.ops.metrics import CONTENT_TYPE

Responses = dict[int | str, dict[str, Any]]
PREDICT: list[str | Enum] = ["predict"]
OIP: list[str | Enum] = ["open inference protocol"]
V1: list[str | Enum] = ["kserve v1"]
OPS: list[str | Enum] = ["operations"]
ADMIN: list[str | Enum] = ["admin"]
EMPTY_OK: Responses = {200: {"description": "True (an empty body)"}, 503: ERROR_RESPONSES[503]}
EXPLAIN_PARAMETERS = {"parameters": [{
    "name": "field", "in": "query", "required": False, "style": "form", "explode": True,
    "schema": {"type": "object", "additionalProperties": {"type": "string"}},
    "description": "Any number of `<field>=<value>` pairs (repeat a multi-valued "
                   "field's name for each value).",
}]}
MODEL, MODEL_VERSION = "/v2/models/{name}", "/v2/models/{name}/versions/{model_version}"
V1_MODEL = "/v1/models/{name}"
PROMETHEUS_TEXT: Responses = {200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text"}}


def errors(*statuses: int) -> Responses:
    return {status: ERROR_RESPONSES[status] for status in statuses}


MODEL_READY: Responses = {**EMPTY_OK, **errors(404)}


@dataclass(frozen=True)
class Route:
    """One API route; the optional fields are FastAPI's, passed on only when set."""

    method: str
    path: str
    endpoint: Callable[..., Any]
    response_model: Any = None
    tags: list[str | Enum] | None = None
    responses: Responses | None = None
    openapi_extra: dict[str, Any] | None = None
    response_class: type[Response] | None = None
    dependencies: list[Any] | None = None
    include_in_schema: bool = True


def api_routes(
    predict: PredictHandlers, oip: OIPHandlers, v1: V1Handlers, ops: OpsHandlers,
    admin: AdminHandlers | None, docs: DocsPages, ui: UIPages,
) -> list[Route | BaseRoute]:
    # A query string is bounded by the URL limit (AFM_MAX_URL_BYTES): 414 for /explain.
    routes: list[Route | BaseRoute] = [
        Route("POST", "/predict", predict.predict, PredictResponse, PREDICT,
              errors(400, 413, 415, 503), json_body(PredictRequest)),
        Route("GET", "/explain", predict.explain, ExplainResponse | ImportanceResponse, PREDICT,
              errors(400, 413, 414, 415, 503), EXPLAIN_PARAMETERS),
        Route("GET", "/v2", oip.server_metadata, ServerMetadata, OIP),
        Route("GET", "/v2/health/live", oip.live, None, OIP, {200: EMPTY_OK[200]},
              response_class=Response),
        Route("GET", "/v2/health/ready", oip.ready, None, OIP, EMPTY_OK, response_class=Response),
        Route("GET", MODEL_VERSION, oip.model_metadata, OIPModelMetadata, OIP, errors(404, 503)),
        Route("GET", MODEL, oip.model_metadata, OIPModelMetadata, OIP, errors(404, 503)),
        Route("GET", f"{MODEL_VERSION}/ready", oip.model_ready, None, OIP, MODEL_READY,
              response_class=Response),
        Route("GET", f"{MODEL}/ready", oip.model_ready, None, OIP, MODEL_READY,
              response_class=Response),
        Route("POST", f"{MODEL_VERSION}/infer", oip.infer, InferenceResponse, OIP,
              errors(400, 404, 413, 415, 503), json_body(InferenceRequest)),
        Route("POST", f"{MODEL}/infer", oip.infer, InferenceResponse, OIP,
              errors(400, 404, 413, 415, 503), json_body(InferenceRequest)),
        Route("POST", "/encode", predict.encode, EncodeResponse, OIP,
              errors(400, 413, 415, 503), json_body(EncodeRequest)),
        Route("POST", f"{V1_MODEL}:predict", v1.predict, V1PredictResponse, V1,
              errors(400, 404, 413, 415, 503), json_body(V1Request)),
        Route("POST", f"{V1_MODEL}:explain", v1.explain, V1ExplainResponse, V1,
              errors(400, 404, 413, 415, 503), json_body(V1Request)),
        Route("GET", V1_MODEL, v1.ready, V1ModelReady, V1, errors(404, 503)),
        Route("GET", "/v1/models", v1.models, V1Models, V1, errors(503)),
        Route("GET", "/", v1.live, V1Live, V1),
        Route("GET", "/healthz", ops.healthz, Status, OPS),
        Route("GET", "/ping", ops.ping, Status, OPS),
        Route("GET", "/readyz", ops.readyz, ReadyStatus, OPS, errors(503)),
        Route("GET", "/metrics", ops.metrics, None, OPS, PROMETHEUS_TEXT, response_class=Response),
        Route("GET", "/metadata", ops.metadata, ModelMetadata, OPS, errors(503)),
    ]
    if admin is not None:
        token = [Depends(admin.bearer)]
        routes += [
            Route("POST", "/admin/reload", admin.reload, ReloadResponse, ADMIN,
                  errors(400, 401, 403, 404, 413, 422, 503), dependencies=token),
            Route("GET", "/admin/shadow", admin.get_shadow, ShadowResponse, ADMIN,
                  errors(401, 403, 503), dependencies=token),
            Route("POST", "/admin/shadow", admin.set_shadow, ShadowResponse, ADMIN,
                  errors(400, 401, 403, 404, 413, 422, 503), dependencies=token),
            Route("DELETE", "/admin/shadow", admin.delete_shadow, ShadowResponse, ADMIN,
                  errors(401, 403, 503), dependencies=token),
        ]
    routes += [
        Route("GET", "/docs", docs.swagger, include_in_schema=False),
        Route("GET", OAUTH2_REDIRECT_URL, docs.swagger_redirect, include_in_schema=False),
        Route("GET", "/redoc", docs.redoc, include_in_schema=False),
        Route("GET", "/ui", ui.page, include_in_schema=False),
        Route("GET", "/ui/form", ui.form, include_in_schema=False),
        ui_assets(),
        assets(),
    ]
    return routes


def install(app: FastAPI, routes: list[Route | BaseRoute]) -> None:
    """Each route straight on the app, in order: an included router costs more a request."""
    for route in routes:
        if not isinstance(route, Route):
            app.router.routes.append(route)
            continue
        options: dict[str, Any] = {key: value for key, value in (
            ("response_model", route.response_model), ("tags", route.tags),
            ("responses", route.responses), ("openapi_extra", route.openapi_extra),
            ("response_class", route.response_class), ("dependencies", route.dependencies),
        ) if value is not None}
        app.add_api_route(route.path, route.endpoint, methods=[route.method],
                          include_in_schema=route.include_in_schema, **options)
