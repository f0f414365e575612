"""Open Inference Protocol (KServe V2) REST: server and model health, metadata, infer.

Health endpoints answer with the status code and an empty body, as the protocol says.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from fastapi import Request
from starlette.responses import Response

from service import metadata, tensors
from service.errors import InvalidInput
from service.http.binary import InferBody, binary_outputs, infer_response, read_infer
from service.http.responses import ORJSONResponse
from service.runtime import Runtime
from service.schemas import RequestInput


class OIPHandlers:
    def __init__(self, runtime: Runtime, max_instances: int) -> None:
        self.runtime = runtime
        self.max_instances = max_instances
        self.server = metadata.server_metadata().model_dump(mode="json")

    async def server_metadata(self) -> Response:
        return ORJSONResponse(self.server)

    async def live(self) -> Response:
        return Response(status_code=200)

    async def ready(self) -> Response:
        self.runtime.info()  # raises NotReady -> 503
        return Response(status_code=200)

    async def model_metadata(self, name: str, model_version: str | None = None) -> Response:
        return ORJSONResponse(self.runtime.info(name, model_version).oip_metadata.model_dump(
            mode="json"))

    async def model_ready(self, name: str, model_version: str | None = None) -> Response:
        self.runtime.info(name, model_version)
        return Response(status_code=200)

    async def infer(self, request: Request, name: str, model_version: str | None = None) -> Response:
        """Score raw tensors: `indices` INT64 [B, F, L] and `weights` FP32 [B, F, L], as JSON
        or with the binary tensor data extension (`service.http.binary`)."""
        fields, entries = self.runtime.info(name, model_version).input_shape
        body = await read_infer(request)
        indices, weights = input_tensors(body, self.max_instances * fields * entries)
        wanted = tensors.outputs_wanted([output.name for output in body.request.outputs or ()])
        binary = binary_outputs(body.request, wanted)
        result = await self.runtime.infer(indices, weights)
        return infer_response(result, body.request.id, wanted, binary)


def input_tensors(body: InferBody, limit: int) -> tuple[np.ndarray, np.ndarray]:
    return tensors.gather(
        ((tensor.name, (tensor, raw)) for tensor, raw in zip(body.request.inputs, body.raw,
                                                              strict=True)),
        lambda given: tensor_array(*given, limit))


def tensor_array(tensor: RequestInput, raw: memoryview | None, limit: int) -> np.ndarray:
    """Check datatype, shape against data length, and element types; -> the typed array."""
    if raw is not None:
        if tensor.data is not None:
            raise InvalidInput(f"input {tensor.name!r} has both data and binary_data_size")
        return tensors.from_bytes(tensor.name, tensor.datatype, tensor.shape, raw, limit)
    size = tensors.declared_size(tensor.name, tensor.datatype, tensor.shape, limit)
    expected = tensor.datatype
    if tensor.data is None:
        raise InvalidInput(f"input {tensor.name!r} has no data (give data, or binary_data_size "
                           f"with the binary tensor data extension)")
    try:
        data = np.asarray(tensor.data)
    except (ValueError, TypeError, OverflowError) as e:
        raise InvalidInput(f"input {tensor.name!r}: data is not a regular array of numbers") from e
    kinds = "iu" if expected == "INT64" else "iuf"
    if data.dtype.kind not in kinds:
        what = "integers" if expected == "INT64" else "numbers"
        raise InvalidInput(f"input {tensor.name!r}: {expected} data must be {what}")
    if data.size != size:
        raise InvalidInput(
            f"input {tensor.name!r}: shape {tensor.shape} holds {size} values, data has {data.size}"
        )
    dtype: type[np.generic] = np.int64 if expected == "INT64" else np.float32
    casting: Literal["same_kind", "safe"] = "same_kind" if expected == "FP32" else "safe"
    try:  # out-of-range floats become inf here, which the runtime refuses as not finite
        with np.errstate(over="ignore"):
            return data.reshape(tensor.shape).astype(dtype, casting=casting)
    except TypeError as e:
        raise InvalidInput(f"input {tensor.name!r}: values do not fit {expected}") from e
