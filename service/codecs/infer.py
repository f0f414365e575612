"""The Open Inference Protocol's infer over REST, free of HTTP: an `InferenceRequest` and
the bytes after its JSON -> the input arrays and the outputs wanted; the result -> the
response's JSON and the bytes after it.

The binary tensor data extension, as Triton and KServe define it: an input whose
`parameters.binary_data_size` says so has its raw little-endian bytes after the JSON, in
the order of the inputs; outputs asked for as binary (an output's `binary_data`, or the
request's `binary_data_output` for every output that does not say) come back the same way.
`service.http.binary` reads the framing (headers, media type) around these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.codecs import tensors
from service.codecs.schemas import InferenceRequest, Parameters, RequestInput
from service.codecs.tensors import LOGGED_AS
from service.core.errors import InvalidInput
from service.core.results import Inference


@dataclass(frozen=True, slots=True)
class InferBody:
    request: InferenceRequest
    raw: list[memoryview | None]  # per input, in order: its bytes when sent as binary

    @classmethod
    def read(cls, request: InferenceRequest, binary: memoryview) -> InferBody:
        """`binary`: the bytes after the JSON (none without the extension)."""
        return cls(request, split_binary(request.inputs, binary))


def split_binary(inputs: Sequence[RequestInput], binary: memoryview) -> list[memoryview | None]:
    """Each input's share of the bytes after the JSON header; they must add up exactly."""
    offset = 0
    parts: list[memoryview | None] = []
    for tensor in inputs:
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:
            parts.append(None)
            continue
        if type(size) is not int or size < 0:
            raise InvalidInput(f"input {tensor.name[:64]!r}: binary_data_size must be a byte "
                               f"count, got {str(size)[:32]!r}")
        if offset + size > len(binary):
            raise InvalidInput(
                f"input {tensor.name[:64]!r}: binary_data_size {size} goes past the end of the "
                f"{len(binary)} bytes after the JSON header (Inference-Header-Content-Length)")
        parts.append(binary[offset:offset + size])
        offset += size
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes after the JSON header belong to no "
                           f"input (binary_data_size)")
    return parts


def input_tensors(body: InferBody, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights), each checked against the model's datatypes and `limit` elements."""
    return tensors.gather(
        ((tensor.name, (tensor, raw)) for tensor, raw in zip(body.request.inputs, body.raw,
                                                              strict=True)),
        lambda given: _input_array(*given, limit))


def _input_array(tensor: RequestInput, raw: memoryview | None, limit: int) -> np.ndarray:
    if raw is None:
        return tensors.from_json(tensor.name, tensor.datatype, tensor.shape, tensor.data, limit)
    if tensor.data is not None:
        raise InvalidInput(f"input {tensor.name!r} has both data and binary_data_size")
    return tensors.from_bytes(tensor.name, tensor.datatype, tensor.shape, raw, limit)


def outputs_wanted(request: InferenceRequest) -> tuple[list[str], list[bool]]:
    """The outputs asked for (all when none is named) and which of them go back as binary."""
    wanted = tensors.outputs_wanted([output.name for output in request.outputs or ()])
    default = _flag(request.parameters, "binary_data_output", "the request")
    given = {output.name: output.parameters for output in request.outputs or ()}
    binary = []
    for name in wanted:
        flag = _flag(given.get(name), "binary_data", f"output {name!r}")
        binary.append(default if flag is None else flag)
    return wanted, binary


def _flag(parameters: Parameters | None, key: str, owner: str) -> Any:
    value = (parameters or {}).get(key)
    if value is not None and not isinstance(value, bool):
        raise InvalidInput(f"{owner}: parameter {key} must be true or false, got {str(value)[:32]!r}")
    return value


def infer_response(result: Inference, request_id: str | None, wanted: Sequence[str],
                   binary: Sequence[bool]) -> tuple[dict[str, Any], list[bytes]]:
    """The response's JSON (no `id` when the request gave none; `parameters.request_id`
    when its instances were logged) and the bytes of the outputs sent as binary, in order."""
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, as_binary in zip(wanted, binary, strict=True):
        array = tensors.output(result.scores, name)
        output: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": "FP32"}
        if as_binary:
            chunks.append(array.tobytes())
            output["parameters"] = {"binary_data_size": len(chunks[-1])}
        else:
            output["data"] = array.ravel()
        outputs.append(output)
    content: dict[str, Any] = {"model_name": result.model.name,
                               "model_version": result.model.version}
    if request_id is not None:
        content["id"] = request_id
    if result.logged_as is not None:  # impression ids: <request_id>-<position>
        content["parameters"] = {LOGGED_AS: result.logged_as}
    content["outputs"] = outputs
    return content, chunks
