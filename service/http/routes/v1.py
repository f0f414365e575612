"""KServe's V1 protocol (TensorFlow Serving's REST API with an `:explain` verb): liveness,
the model list and readiness, `:predict` and `:explain`, on the same runtime, checks,
limits and errors as `POST /predict` (404 for another model's name)."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from service.codecs.predictions import render_v1_explanations, render_v1_predictions
from service.codecs.schemas import V1Request
from service.core.runtime import Runtime
from service.http.body import read_json
from service.http.responses import ORJSONResponse


class V1Handlers:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def live(self) -> Response:
        """The server answers (KServe's V1 liveness, which its clients read at `/`)."""
        return ORJSONResponse({"status": "alive"})

    async def models(self) -> Response:
        return ORJSONResponse({"models": [self.runtime.info().ref.name]})

    async def ready(self, name: str) -> Response:
        """The model is loaded and warmed up (503 before, 404 for another name)."""
        return ORJSONResponse({"name": self.runtime.info(name).ref.name, "ready": True})

    async def predict(self, request: Request, name: str) -> Response:
        """Each instance's probability (binary models) or prediction."""
        self.runtime.info(name)
        body = await read_json(request, V1Request)
        result = await self.runtime.predict(body.rows(), explain=False)
        return ORJSONResponse(render_v1_predictions(result))

    async def explain(self, request: Request, name: str) -> Response:
        """The predictions, and each instance's score explained with every pair: bias +
        linear terms + pair contributions = score, the model's own decomposition."""
        self.runtime.info(name)
        body = await read_json(request, V1Request)
        result = await self.runtime.predict(body.rows(), explain=True)
        return ORJSONResponse(render_v1_explanations(result))
