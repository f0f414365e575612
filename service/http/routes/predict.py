"""POST /predict, GET /explain and POST /encode (field values -> the model's tensors)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.responses import Response

from service.codecs.predictions import render_predictions
from service.http.body import read_json
from service.http.plain_body import plain_predict_request
from service.http.responses import ORJSONResponse
from service.runtime import EncodedInstances, Runtime
from service.schemas import EncodeRequest, ExplainOptions, PredictRequest


class PredictHandlers:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def predict(self, request: Request) -> Response:
        """Score instances; with `explain`, each pair's attention and signed contribution."""
        body = await read_json(request, PredictRequest, plain_predict_request)
        top_k = body.explain.top_k if isinstance(body.explain, ExplainOptions) else None
        result = await self.runtime.predict(body.instances, explain=bool(body.explain), top_k=top_k)
        return ORJSONResponse({"model": result.model, "predictions": render_predictions(result)})

    async def explain(self, request: Request) -> Response:
        """With `field=value` query parameters: that one instance explained with all its
        pairs. Without: the model's global field-pair importance from its manifest."""
        items = request.query_params.multi_items()
        if not items:
            importance = self.runtime.importance()
            return ORJSONResponse({"model": importance.model, "importance": [
                pair.model_dump(mode="json") for pair in importance.pairs]})
        result = await self.runtime.explain(items)
        return ORJSONResponse({"model": result.model, **render_predictions(result)[0]})

    async def encode(self, request: Request) -> Response:
        """Field values -> the `indices` and `weights` tensors the Open Inference Protocol's
        `infer` takes: the vocabulary lookup, for clients that speak only that protocol."""
        body = await read_json(request, EncodeRequest)
        return ORJSONResponse(encode_response(self.runtime.encode(body.instances)))


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

