"""The bundle served by MLServer (1.7) with a custom runtime, run by MLServer's own venv:

    AFM_MODEL_DIR=DIR PYTHONPATH=. /work/peers/mlserver/bin/python -m bench.peers.mlserver_peer \\
        --host 127.0.0.1 --port 8080

Per request: POST /predict (the service's body) is a custom handler on the model
(MLServer's `custom_handler`, routed on its REST app): the body parsed by orjson, its
instances encoded and scored (`work.predictions`), the answer rendered by orjson, as
bench/bare.py does. POST /v2/models/<name>/infer is MLServer's own V2 path: its pydantic
InferenceRequest, the runtime's `predict` decoding `indices` and `weights` with NumpyCodec
and returning every output as an InferenceResponse. MLServer's defaults otherwise (its
access log, Prometheus middleware and metrics server, gRPC server, gzip middleware),
except `parallel_workers=0`: the model runs in the server's process, one process like
the others, with no inter-process hop per request. gRPC and metrics listen on free ports
of the same host.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response
from mlserver import MLModel, MLServer
from mlserver.codecs import NumpyCodec
from mlserver.handlers import custom_handler
from mlserver.settings import ModelParameters, ModelSettings, Settings
from mlserver.types import InferenceRequest, InferenceResponse

from bench.peers import work


class AFMRuntime(MLModel):  # type: ignore[misc]  # MLServer is not installed for mypy
    async def load(self) -> bool:
        self.bundle = work.load(self.settings.parameters.uri)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        given = {tensor.name: NumpyCodec.decode_input(tensor) for tensor in payload.inputs}
        outputs = work.infer(self.bundle, given["indices"], given["weights"])
        return InferenceResponse(
            model_name=self.name, model_version=self.version, id=payload.id,
            outputs=[NumpyCodec.encode_output(name, array) for name, array in outputs.items()],
        )

    @custom_handler(rest_path="/predict")
    async def predict_body(self, request: Request) -> Response:
        instances: list[dict[str, Any]] = orjson.loads(await request.body())["instances"]
        return Response(orjson.dumps({"predictions": work.predictions(self.bundle, instances)}),
                        media_type="application/json")


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def main() -> None:
    args = work.arguments("mlserver_peer")
    manifest = work.load(args.model_dir).manifest
    settings = Settings(host=args.host, http_port=args.port, grpc_port=_free_port(args.host),
                        metrics_port=_free_port(args.host), parallel_workers=0,
                        load_models_at_startup=False)
    model = ModelSettings(name=manifest.name, implementation=AFMRuntime,
                          parameters=ModelParameters(uri=str(args.model_dir),
                                                     version=manifest.version))
    from mlserver.utils import install_uvloop_event_loop  # as `mlserver start` does

    async def serve() -> None:  # MLServer() wants a running loop
        await MLServer(settings).start([model])

    install_uvloop_event_loop()
    asyncio.run(serve())


if __name__ == "__main__":
    main()
