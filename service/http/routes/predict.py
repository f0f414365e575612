"""POST /predict, GET /explain and POST /encode (field values -> the model's tensors)."""

from __future__ import annotations

from enum import Enum
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from service.http.body import json_body, read_json
from service.http.errors import ERROR_RESPONSES
from service.http.responses import ORJSONResponse
from service.runtime import EncodedInstances, Runtime
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
        return ORJSONResponse({"model": result.model, "predictions": result.predictions})

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
            importance = runtime.importance()
            return ORJSONResponse({"model": importance.model, "importance": [
                pair.model_dump(mode="json") for pair in importance.pairs]})
        result = await runtime.explain(items)
        return ORJSONResponse({"model": result.model, **result.predictions[0]})


def register_encode(app: FastAPI, runtime: Runtime) -> None:
    @app.post("/encode", response_model=EncodeResponse, responses=ERRORS,
              tags=["open inference protocol"], openapi_extra=json_body(EncodeRequest))
    async def encode(request: Request) -> Response:
        """Field values -> the `indices` and `weights` tensors the Open Inference Protocol's
        `infer` takes: the vocabulary lookup, for clients that speak only that protocol."""
        body = await read_json(request, EncodeRequest)
        return ORJSONResponse(encode_response(runtime.encode(body.instances)))


def encode_response(result: EncodedInstances) -> dict[str, Any]:
    ref, encoded = result.model, result.encoded
    shape = list(encoded.indices.shape)
    return {
        "model": ref, "infer": f"/v2/models/{ref['name']}/versions/{ref['version']}/infer",
        "inputs": [
            {"name": "indices", "shape": shape, "datatype": "INT64", "data": encoded.indices.ravel()},
            {"name": "weights", "shape": shape, "datatype": "FP32", "data": encoded.weights.ravel()},
        ],
        "oov": [{"instance": row, "field": field, "value": value} for row, field, value in encoded.oov],
    }

