"""gRPC's own wire form of the tensors: `ModelInferRequest` inputs as typed contents or raw
bytes -> the input arrays, and the result -> a `ModelInferResponse`, its outputs the way the
inputs came (raw_output_contents for raw inputs). The checks are the shared ones
(`service.codecs.tensors`), so gRPC and REST refuse the same inputs alike."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.codecs import tensors
from service.core.errors import InvalidInput
from service.core.results import Inference
from service.grpc.proto import grpc_predict_v2_pb2 as pb

CONTENTS = {"INT64": "int64_contents", "FP32": "fp32_contents"}


def input_tensors(request: pb.ModelInferRequest, limit: int) -> tuple[np.ndarray, np.ndarray]:
    inputs, raw = request.inputs, request.raw_input_contents
    if raw and len(raw) != len(inputs):
        raise InvalidInput(f"raw_input_contents has {len(raw)} entries for {len(inputs)} inputs "
                           f"(one per input, in order)")

    def decode(i: int) -> np.ndarray:
        tensor = inputs[i]
        if raw:
            if tensor.HasField("contents"):
                raise InvalidInput(f"input {tensor.name!r}: contents and raw_input_contents "
                                   f"are both given")
            return tensors.from_bytes(tensor.name, tensor.datatype, tensor.shape, raw[i], limit)
        tensors.declared_size(tensor.name, tensor.datatype, tensor.shape, limit)
        field = CONTENTS[tensor.datatype]
        values: Sequence[float] = getattr(tensor.contents, field)
        if not values and tensor.contents.ByteSize():
            raise InvalidInput(f"input {tensor.name!r} ({tensor.datatype}) must carry its "
                               f"values in contents.{field}")
        return tensors.from_values(tensor.name, tensor.datatype, tensor.shape, values, limit)

    return tensors.gather(((tensor.name, i) for i, tensor in enumerate(inputs)), decode)


def infer_response(request_id: str, result: Inference, wanted: Sequence[str],
                   raw: bool) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=result.model.name,
                                     model_version=result.model.version, id=request_id)
    if result.logged_as is not None:  # impression ids: <request_id>-<position>
        response.parameters[tensors.LOGGED_AS].string_param = result.logged_as
    for name in wanted:
        array = tensors.output(result.scores, name)
        output = response.outputs.add(name=name, datatype="FP32", shape=array.shape)
        if raw:
            response.raw_output_contents.append(array.tobytes())
        else:
            output.contents.fp32_contents.extend(array.ravel().tolist())
    return response
