"""JSON request bodies read and validated in one pass by pydantic's own parser.

Hot routes read their body themselves rather than through a FastAPI body parameter:
one `model_validate_json` call (Rust) instead of json.loads, a dict walk and FastAPI's
dependency machinery (docs/BENCHMARKS.md). It is also stricter: it refuses lone
surrogates, invalid UTF-8 and pathologically deep nesting as malformed JSON. The body's
schema still reaches the OpenAPI document through `json_body` and `openapi_components`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ValidationError
from pydantic_core import from_json

from model.validation import describe_error
from service.core.errors import InvalidInput
from service.http.errors import UnsupportedMediaType

Body = TypeVar("Body", bound=BaseModel)
REF = "#/components/schemas/{model}"


async def read_json(request: Request, model: type[Body],
                    plain: Callable[[bytes], Body | None] | None = None) -> Body:
    media = request.headers.get("content-type")
    if media is not None:
        kind = media.partition(";")[0].strip().lower()
        if kind != "application/json" and not kind.endswith("+json"):
            raise UnsupportedMediaType(f"Content-Type must be application/json, got {media[:64]!r}")
    return parse_json(await request.body(), model, plain)


def parse_json(body: bytes, model: type[Body],
               plain: Callable[[bytes], Body | None] | None = None) -> Body:
    """A JSON document validated against `model`; any fault is InvalidInput. `plain`, when
    given, reads the bodies it recognises as plainly valid more cheaply (None: it declines)
    and must give what `model` would (service/codecs/plain_body.py)."""
    if _may_hold_non_finite(body):
        _refuse_non_finite(body)
    if plain is not None and (read := plain(body)) is not None:
        return read
    try:
        return model.model_validate_json(body)
    except ValidationError as e:
        raise InvalidInput(describe_error(e, model, "the body")) from e


def _may_hold_non_finite(body: bytes) -> bool:
    # A capital N or I first (memchr): most bodies have neither, and the word searches
    # cost a large body several times as much.
    return (b"N" in body and b"NaN" in body) or (b"I" in body and b"Infinity" in body)


def _refuse_non_finite(body: bytes) -> None:
    """JSON has no NaN or Infinity, but pydantic's parser (like Python's) takes them: refuse
    them by name. Only bodies holding those words pay for these parses."""
    try:
        from_json(body, allow_inf_nan=False)
    except ValueError as e:
        try:
            from_json(body)
        except ValueError:
            return  # malformed anyway: the validation error says where
        raise InvalidInput(f"malformed JSON: NaN and infinities are not allowed (JSON numbers "
                           f"must be finite): {e}") from e


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` documenting a body that the route reads with `read_json`."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": REF.format(model=model.__name__)}}}}}


def openapi_components(app: FastAPI, models: list[type[BaseModel]]) -> None:
    """Add the schemas of bodies read by `read_json` to the app's OpenAPI document."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            _drop_fastapi_422(schema)
            for model in models:
                definition = model.model_json_schema(ref_template=REF)
                components.update(definition.pop("$defs", {}))
                components[model.__name__] = definition
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _drop_fastapi_422(schema: dict[str, Any]) -> None:
    """FastAPI documents a 422 for every route it validates; this service answers invalid
    input with 400 (`service.core.errors.InvalidInput`), which the routes document themselves."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            responses = operation.get("responses", {})
            if "HTTPValidationError" in str(responses.get("422", "")):
                del responses["422"]
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
