"""The HTTP reading of `service.core.errors`: a status per kind, the refusals only HTTP has
(401, 414, 415, 431), and one renderer, `{"error": ...}`, for every error response."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from model.validation import describe
from service.codecs.schemas import ErrorBody
from service.core.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    NotReady,
    ReloadRefused,
    ServiceError,
    TooLarge,
    truncated,
)
from service.http.responses import ORJSONResponse


class Unauthorized(Forbidden):
    """No bearer token."""


class UnsupportedMediaType(InvalidInput):
    """A body with a Content-Type other than JSON."""


class UriTooLong(TooLarge):
    pass


class HeadersTooLarge(TooLarge):
    pass


# Invalid input is always 400 (as the Open Inference Protocol answers invalid requests),
# so a client needs one rule for its own mistakes. Looked up along the class's MRO.
STATUS: dict[type[ServiceError], int] = {
    ServiceError: 500, InvalidInput: 400, Unauthorized: 401, Forbidden: 403, NotFound: 404,
    TooLarge: 413, UriTooLong: 414, UnsupportedMediaType: 415, ReloadRefused: 422,
    HeadersTooLarge: 431, NotReady: 503,
}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "Invalid input: malformed JSON, a body that does not match the schema, or values "
              "that do not fit the model"),
        (401, "No bearer token"),
        (403, "Wrong bearer token, or a path outside the models root"),
        (404, "No such model, version or bundle"),
        (413, "Body or batch over the limit"),
        (414, "URL over the limit (AFM_MAX_URL_BYTES)"),
        (415, "Content-Type other than JSON"),
        (422, "A bundle refused by a reload (the model that was serving still is)"),
        (431, "Request headers over the limit (AFM_MAX_HEADER_BYTES)"),
        (503, "Model not loaded yet"),
    )
}


def status_of(error: ServiceError) -> int:
    for kind in type(error).__mro__:
        status = STATUS.get(kind)
        if status is not None:
            return status
    return 500


def url_too_long(limit: int) -> UriTooLong:
    return UriTooLong(f"URL longer than {limit} bytes")


def headers_too_large(limit: int) -> HeadersTooLarge:
    return HeadersTooLarge(f"request headers larger than {limit} bytes")


def error_body(message: str) -> dict[str, str]:
    return {"error": truncated(message)}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return ORJSONResponse(error_body(message), status_code=status, headers=headers)


def describe_validation(exc: RequestValidationError) -> str:
    """FastAPI's validation errors (query, path, bodies it parses) as one line."""
    errors = [{**e, "loc": _without_body(tuple(e.get("loc", ())))} for e in exc.errors()]
    return describe(errors, root="the body")


def _without_body(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    return loc[1:] if loc[:1] == ("body",) else loc


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    status = status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return error_response(status, exc.message, headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(STATUS[InvalidInput], describe_validation(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
