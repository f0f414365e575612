"""The Open Inference Protocol's binary tensor data extension over REST, as Triton and
KServe define it: the body is a JSON header of `Inference-Header-Content-Length` bytes,
then the raw little-endian bytes of each input whose `parameters.binary_data_size` says so,
in the order of the inputs. Outputs asked for as binary (an output's `binary_data`, or the
request's `binary_data_output` for every output that does not say) come back the same way.

Without the header the whole body is JSON, as before; both kinds go through the same
checks and limits (`service.tensors`, the body limit of `service.http.limits`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from fastapi import Request
from starlette.responses import Response

from service.errors import InvalidInput
from service.http.body import parse_json, read_json
from service.http.errors import UnsupportedMediaType
from service.http.responses import ORJSONResponse
from service.runtime import Inference
from service.schemas import InferenceRequest, Parameters, RequestInput

HEADER_LENGTH = "inference-header-content-length"
BINARY_MEDIA = "application/octet-stream"
_MEDIA = (BINARY_MEDIA, "application/json")


@dataclass(frozen=True, slots=True)
class InferBody:
    request: InferenceRequest
    raw: list[memoryview | None]  # per input, in order: its bytes when sent as binary


async def read_infer(request: Request) -> InferBody:
    length = request.headers.get(HEADER_LENGTH)
    if length is None:
        body = await read_json(request, InferenceRequest)
        return InferBody(body, split_binary(body.inputs, memoryview(b"")))
    media = request.headers.get("content-type")
    if media is not None and media.partition(";")[0].strip().lower() not in _MEDIA:
        raise UnsupportedMediaType(
            f"Content-Type must be {BINARY_MEDIA} or application/json with "
            f"Inference-Header-Content-Length, got {media[:64]!r}")
    data = await request.body()
    if not length.isdigit() or int(length) > len(data):
        raise InvalidInput(f"Inference-Header-Content-Length must be the JSON header's size in "
                           f"bytes, at most the body's {len(data)}; got {length[:32]!r}")
    header = parse_json(data[:int(length)], InferenceRequest)
    return InferBody(header, split_binary(header.inputs, memoryview(data)[int(length):]))


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


def binary_outputs(request: InferenceRequest, wanted: Sequence[str]) -> list[bool]:
    """Which of the wanted outputs go back as binary."""
    default = _flag(request.parameters, "binary_data_output", "the request")
    given = {output.name: output.parameters for output in request.outputs or ()}
    flags = []
    for name in wanted:
        flag = _flag(given.get(name), "binary_data", f"output {name!r}")
        flags.append(default if flag is None else flag)
    return flags


def _flag(parameters: Parameters | None, key: str, owner: str) -> Any:
    value = (parameters or {}).get(key)
    if value is not None and not isinstance(value, bool):
        raise InvalidInput(f"{owner}: parameter {key} must be true or false, got {str(value)[:32]!r}")
    return value


def infer_response(result: Inference, request_id: str | None, wanted: Sequence[str],
                   binary: Sequence[bool]) -> Response:
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, as_binary in zip(wanted, binary, strict=True):
        array = np.ascontiguousarray(getattr(result.scores, name), "<f4")
        output: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": "FP32"}
        if as_binary:
            chunks.append(array.tobytes())
            output["parameters"] = {"binary_data_size": len(chunks[-1])}
        else:
            output["data"] = array.ravel()
        outputs.append(output)
    content = {"model_name": result.model["name"], "model_version": result.model["version"],
               "id": request_id, "outputs": outputs}
    if not chunks:
        return ORJSONResponse(content)
    header = orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(header + b"".join(chunks), media_type=BINARY_MEDIA,
                    headers={HEADER_LENGTH: str(len(header))})
