"""Open Inference Protocol (KServe V2) REST: server and model health, metadata, infer.

Health endpoints answer with the status code and an empty body, as the protocol says.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from fastapi import Request
from starlette.responses import Response

from model.manifest import INPUT_NAMES, OUTPUT_NAMES
from service import metadata
from service.errors import InvalidInput, TooLarge
from service.http.body import read_json
from service.http.responses import ORJSONResponse
from service.runtime import Runtime
from service.schemas import InferenceRequest, RequestInput


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
        """Score raw tensors: `indices` INT64 [B, F, L] and `weights` FP32 [B, F, L]."""
        fields, entries = self.runtime.info(name, model_version).input_shape
        body = await read_json(request, InferenceRequest)
        indices, weights = input_tensors(body.inputs, self.max_instances * fields * entries)
        wanted = requested_outputs(body)
        result = await self.runtime.infer(indices, weights)
        outputs = []
        for name_ in wanted:
            array = getattr(result.scores, name_)
            outputs.append({"name": name_, "shape": list(array.shape), "datatype": "FP32",
                            "data": np.ascontiguousarray(array).ravel()})
        return ORJSONResponse({
            "model_name": result.model["name"], "model_version": result.model["version"],
            "id": body.id, "outputs": outputs,
        })


def input_tensors(inputs: list[RequestInput], limit: int) -> tuple[np.ndarray, np.ndarray]:
    given: dict[str, np.ndarray] = {}
    for tensor in inputs:
        if tensor.name not in metadata.DATATYPES:
            raise InvalidInput(f"unknown input {tensor.name!r}: the model takes {list(INPUT_NAMES)}")
        if tensor.name in given:
            raise InvalidInput(f"input {tensor.name!r} given twice")
        given[tensor.name] = tensor_array(tensor, limit)
    missing = [name for name in INPUT_NAMES if name not in given]
    if missing:
        raise InvalidInput(f"missing input(s) {missing}")
    return given["indices"], given["weights"]


def tensor_array(tensor: RequestInput, limit: int) -> np.ndarray:
    """Check datatype, shape against data length, and element types; -> the typed array."""
    expected = metadata.DATATYPES[tensor.name]
    if tensor.datatype != expected:
        raise InvalidInput(f"input {tensor.name!r} must be {expected}, got {tensor.datatype!r}")
    size = math.prod(tensor.shape)
    if size > limit:
        raise TooLarge(f"input {tensor.name!r} of shape {tensor.shape} is over the limit")
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


def requested_outputs(body: InferenceRequest) -> list[str]:
    if not body.outputs:
        return list(OUTPUT_NAMES)
    names = [output.name for output in body.outputs]
    unknown = [name for name in names if name not in OUTPUT_NAMES]
    if unknown:
        raise InvalidInput(f"unknown output(s) {unknown}: the model gives {list(OUTPUT_NAMES)}")
    return list(dict.fromkeys(names))
