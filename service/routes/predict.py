"""POST /predict, GET /explain and POST /encode (field values -> the model's tensors)."""

from __future__ import annotations

import math
from enum import Enum
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from model.features import Encoded, FeatureSpace, FieldKind
from service.errors import InvalidInput
from service.http_errors import ERROR_RESPONSES
from service.responses import ORJSONResponse
from service.routes.body import json_body, read_json
from service.runtime import LoadedModel, Runtime
from service.schemas import (
    EncodeRequest,
    EncodeResponse,
    ExplainOptions,
    ExplainResponse,
    ImportanceResponse,
    PredictRequest,
    PredictResponse,
)

TAGS: list[str | Enum] = ["predict"]
ERRORS: dict[int | str, dict[str, Any]] = {
    status: ERROR_RESPONSES[status] for status in (400, 413, 415, 503)
}
# A query string is bounded by the URL limit (AFM_MAX_URL_BYTES, 414 in the middleware).
EXPLAIN_ERRORS: dict[int | str, dict[str, Any]] = {
    status: ERROR_RESPONSES[status] for status in (400, 413, 414, 415, 503)
}


def register(app: FastAPI, runtime: Runtime) -> None:
    @app.post("/predict", response_model=PredictResponse, responses=ERRORS, tags=TAGS,
              openapi_extra=json_body(PredictRequest))
    async def predict(request: Request) -> Response:
        """Score instances; with `explain`, each pair's attention and signed contribution."""
        body = await read_json(request, PredictRequest)
        top_k = body.explain.top_k if isinstance(body.explain, ExplainOptions) else None
        result = await runtime.predict(body.instances, explain=bool(body.explain), top_k=top_k)
        return ORJSONResponse(result)

    @app.get(
        "/explain",
        tags=TAGS,
        response_model=ExplainResponse | ImportanceResponse,
        responses=EXPLAIN_ERRORS,
        openapi_extra={"parameters": [{
            "name": "field", "in": "query", "required": False, "style": "form", "explode": True,
            "schema": {"type": "object", "additionalProperties": {"type": "string"}},
            "description": "Any number of `<field>=<value>` pairs (repeat a multi-valued "
                           "field's name for each value).",
        }]},
    )
    async def explain(request: Request) -> Response:
        """With `field=value` query parameters: that one instance explained with all its
        pairs. Without: the model's global field-pair importance from its manifest."""
        items = request.query_params.multi_items()
        if not items:
            return ORJSONResponse(runtime.importance())
        instance = instance_from_query(runtime.model.bundle.features, items)
        return ORJSONResponse(await runtime.explain(instance))


def register_encode(app: FastAPI, runtime: Runtime) -> None:
    @app.post("/encode", response_model=EncodeResponse, responses=ERRORS,
              tags=["open inference protocol"], openapi_extra=json_body(EncodeRequest))
    async def encode(request: Request) -> Response:
        """Field values -> the `indices` and `weights` tensors the Open Inference Protocol's
        `infer` takes: the vocabulary lookup, for clients that speak only that protocol."""
        body = await read_json(request, EncodeRequest)
        model, encoded = runtime.encode(body.instances)
        return ORJSONResponse(encode_response(model, encoded))


def encode_response(model: LoadedModel, encoded: Encoded) -> dict[str, Any]:
    ref = model.ref
    shape = list(encoded.indices.shape)
    return {
        "model": ref, "infer": f"/v2/models/{ref['name']}/versions/{ref['version']}/infer",
        "inputs": [
            {"name": "indices", "shape": shape, "datatype": "INT64", "data": encoded.indices.ravel()},
            {"name": "weights", "shape": shape, "datatype": "FP32", "data": encoded.weights.ravel()},
        ],
        "oov": [{"instance": row, "field": field, "value": value} for row, field, value in encoded.oov],
    }


def instance_from_query(space: FeatureSpace, items: list[tuple[str, str]]) -> dict[str, Any]:
    """Query strings carry text: numbers for numeric fields, lists for multi-valued ones."""
    kinds = {spec.name: spec.kind for spec in space.fields}
    instance: dict[str, Any] = {}
    for name, text in items:
        kind = kinds.get(name)
        if kind is None:
            raise InvalidInput(f"unknown field {name!r}")
        if kind == FieldKind.MULTI:
            instance.setdefault(name, []).append(text)
            continue
        if name in instance:
            raise InvalidInput(f"field {name!r} given more than once")
        instance[name] = _number(name, text) if kind in (FieldKind.NUMERIC,
                                                         FieldKind.BUCKETIZED) else text
    return instance


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError as e:
        raise InvalidInput(f"field {name!r} takes a number, got {text[:64]!r}") from e
    if not math.isfinite(value):
        raise InvalidInput(f"field {name!r} takes a finite number, got {text[:64]!r}")
    return value
