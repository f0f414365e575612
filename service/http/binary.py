"""The framing of the binary tensor data extension over HTTP: the body is a JSON header of
`Inference-Header-Content-Length` bytes, then the raw bytes of the inputs sent as binary
(`service.codecs.infer` splits and decodes them, and encodes the response). Without that
header the whole body is JSON, as before; both kinds go through the same checks and limits
(`service.codecs.tensors`, the body limit of `service.http.limits`).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from starlette.responses import Response

from service.codecs.infer import InferBody
from service.codecs.schemas import InferenceRequest
from service.core.errors import InvalidInput
from service.http.body import parse_json, read_json
from service.http.errors import UnsupportedMediaType
from service.http.responses import ORJSONResponse

HEADER_LENGTH = "inference-header-content-length"
BINARY_MEDIA = "application/octet-stream"
_MEDIA = (BINARY_MEDIA, "application/json")


async def read_infer(request: Request) -> InferBody:
    length = request.headers.get(HEADER_LENGTH)
    if length is None:
        return InferBody.read(await read_json(request, InferenceRequest), memoryview(b""))
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
    return InferBody.read(header, memoryview(data)[int(length):])


def infer_response(content: dict[str, Any], chunks: list[bytes]) -> Response:
    """JSON alone, or the JSON header and the outputs' bytes after it."""
    if not chunks:
        return ORJSONResponse(content)
    header = orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(header + b"".join(chunks), media_type=BINARY_MEDIA,
                    headers={HEADER_LENGTH: str(len(header))})
