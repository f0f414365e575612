"""A bare FastAPI route doing what /predict does at its core, for bench.serve to compare
with: parse the JSON body, encode the instances, one onnxruntime run, the scores and
predictions as JSON. No validation, batching, metrics, logging, limits or explanations:
the floor a model server on FastAPI and uvicorn could reach. Benchmark-only; the service
never imports it.

    AFM_MODEL_DIR=DIR python -m uvicorn bench.bare:create --factory --http httptools
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from model.bundle import Bundle


def create(model_dir: Path | None = None) -> FastAPI:
    bundle = Bundle.load(model_dir or os.environ["AFM_MODEL_DIR"])
    label = "probability" if bundle.manifest.task == "binary" else "prediction"
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    async def predict(request: Request) -> Response:
        instances = orjson.loads(await request.body())["instances"]
        encoded = bundle.features.encode(instances)
        scores = bundle.run(encoded.indices, encoded.weights)
        values = scores.prediction.tolist()
        predictions = [{"score": score, label: value}
                       for score, value in zip(scores.score.tolist(), values, strict=True)]
        return Response(orjson.dumps({"predictions": predictions}),
                        media_type="application/json")

    async def ready() -> Response:
        return Response(b'{"ready": true}', media_type="application/json")

    app.add_api_route("/predict", predict, methods=["POST"])
    app.add_api_route("/readyz", ready, methods=["GET"])
    return app
