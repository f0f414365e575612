"""POST /predict, GET /explain and POST /encode (field values -> the model's tensors)."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from service.codecs.plain_body import plain_predict_request
from service.codecs.predictions import render_encoded, render_importance, render_predictions
from service.codecs.query import instance_from_text
from service.codecs.schemas import EncodeRequest, ExplainOptions, PredictRequest
from service.core.runtime import Runtime
from service.http.body import read_json
from service.http.responses import ORJSONResponse
from service.http.telemetry import origin_of


class PredictHandlers:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def predict(self, request: Request) -> Response:
        """Score instances; with `explain`, each pair's attention and signed contribution."""
        body = await read_json(request, PredictRequest, plain_predict_request)
        top_k = body.explain.top_k if isinstance(body.explain, ExplainOptions) else None
        result = await self.runtime.predict(body.instances, explain=bool(body.explain), top_k=top_k,
                                            origin=origin_of(request, "predict"))
        return ORJSONResponse({"model": result.model, "predictions": render_predictions(result)})

    async def explain(self, request: Request) -> Response:
        """With `field=value` query parameters: that one instance explained with all its
        pairs. Without: the model's global field-pair importance from its manifest."""
        items = request.query_params.multi_items()
        if not items:
            return ORJSONResponse(render_importance(self.runtime.importance()))
        instance = instance_from_text(self.runtime.info().field_kinds, items)
        result = await self.runtime.predict([instance], explain=True,
                                            origin=origin_of(request, "explain"))
        return ORJSONResponse({"model": result.model, **render_predictions(result)[0]})

    async def encode(self, request: Request) -> Response:
        """Field values -> the `indices` and `weights` tensors the Open Inference Protocol's
        `infer` takes: the vocabulary lookup, for clients that speak only that protocol."""
        body = await read_json(request, EncodeRequest)
        return ORJSONResponse(render_encoded(self.runtime.encode(body.instances)))
