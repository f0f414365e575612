"""The bundle served by KServe's ModelServer (0.21) with a custom `Model`, run by KServe's
own venv:

    AFM_MODEL_DIR=DIR PYTHONPATH=. /work/peers/kserve/bin/python -m bench.peers.kserve_peer \\
        --host 127.0.0.1 --port 8080

Per request: POST /v1/models/<name>:predict, KServe's V1 protocol, whose body is the
service's /predict body (`{"instances": [...]}`): KServe parses it (orjson) into a dict,
the model's `predict` encodes and scores the instances (`work.predictions`) and returns
`{"predictions": [...]}`, which KServe renders. POST /v2/models/<name>/infer is KServe's V2
path: its InferRequest, `predict` reading `indices` and `weights` with `as_numpy` and
returning every output in an InferResponse (with a fresh id when the request has
none, as KServe's own runtimes do). KServe's defaults otherwise (uvicorn's access
log, the per-request latency log line, its timing middleware), except gRPC, which is
switched off: the service runs without gRPC unless asked, and KServe's would listen on
every interface. The HTTP server is bound to `--host` (KServe itself binds 0.0.0.0).
"""

from __future__ import annotations

from typing import Any

import uvicorn
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.utils.utils import generate_uuid

from bench.peers import work


class AFMModel(Model):  # type: ignore[misc]  # KServe is not installed for mypy
    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.load()

    def load(self) -> bool:
        self.bundle = work.load(self.model_dir)
        self.ready = True
        return True

    async def predict(self, payload: dict[str, Any] | InferRequest,
                      headers: dict[str, str] | None = None) -> dict[str, Any] | InferResponse:
        if isinstance(payload, dict):
            return {"predictions": work.predictions(self.bundle, payload["instances"])}
        given = {tensor.name: tensor.as_numpy() for tensor in payload.inputs}
        outputs = []
        for name, array in work.infer(self.bundle, given["indices"], given["weights"]).items():
            output = InferOutput(name=name, shape=list(array.shape), datatype="FP32")
            output.set_data_from_numpy(array, binary_data=False)
            outputs.append(output)
        return InferResponse(response_id=payload.id or generate_uuid(), model_name=self.name,
                             infer_outputs=outputs)


def _bind_to(host: str) -> None:
    """KServe's REST server hard-codes host 0.0.0.0 in its uvicorn.Config."""
    original = uvicorn.Config.__init__

    def init(self: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **{**kwargs, "host": host})

    uvicorn.Config.__init__ = init  # type: ignore[method-assign]


def main() -> None:
    args = work.arguments("kserve_peer")
    _bind_to(args.host)
    model = AFMModel(work.load(args.model_dir).manifest.name, str(args.model_dir))
    ModelServer(http_port=args.port, enable_grpc=False, workers=1).start([model])


if __name__ == "__main__":
    main()
