"""JSON responses rendered by orjson: many times faster than json on explanation payloads
(docs/BENCHMARKS.md)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse

# No OPT_NON_STR_KEYS: every response has string keys, and the option sends every dict
# through a slower path (docs/BENCHMARKS.md).
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=_OPTIONS)
