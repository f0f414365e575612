"""Open Inference Protocol (KServe V2) REST: server and model health, metadata, infer.

Health endpoints answer with the status code and an empty body, as the protocol says.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.responses import Response

from service.codecs import infer, metadata
from service.core.model import ModelInfo, PerModel
from service.core.runtime import Runtime
from service.http.binary import infer_response, read_infer
from service.http.responses import ORJSONResponse
from service.http.telemetry import origin_of


def _oip_metadata(info: ModelInfo) -> dict[str, Any]:
    return metadata.oip_metadata(info).model_dump(mode="json")


class OIPHandlers:
    def __init__(self, runtime: Runtime, max_instances: int) -> None:
        self.runtime = runtime
        self.max_instances = max_instances
        self.server = metadata.server_metadata().model_dump(mode="json")
        self.oip_metadata = PerModel(_oip_metadata)

    async def server_metadata(self) -> Response:
        return ORJSONResponse(self.server)

    async def live(self) -> Response:
        return Response(status_code=200)

    async def ready(self) -> Response:
        self.runtime.info()  # raises NotReady -> 503
        return Response(status_code=200)

    async def model_metadata(self, name: str, model_version: str | None = None) -> Response:
        return ORJSONResponse(self.oip_metadata(self.runtime.info(name, model_version)))

    async def model_ready(self, name: str, model_version: str | None = None) -> Response:
        self.runtime.info(name, model_version)
        return Response(status_code=200)

    async def infer(self, request: Request, name: str, model_version: str | None = None) -> Response:
        """Score raw tensors: `indices` INT64 [B, F, L] and `weights` FP32 [B, F, L], as JSON
        or with the binary tensor data extension (`service.codecs.infer`)."""
        fields, entries = self.runtime.info(name, model_version).input_shape
        body = await read_infer(request)
        indices, weights = infer.input_tensors(body, self.max_instances * fields * entries)
        wanted, binary = infer.outputs_wanted(body.request)
        result = await self.runtime.infer(indices, weights, origin_of(request, "infer"))
        return infer_response(*infer.infer_response(result, body.request.id, wanted, binary))
