"""One error base class carrying its HTTP status, a few kinds, one renderer: {"error": ...}.

The runtime raises these too: they name what went wrong for any protocol, and the status
is simply the HTTP reading of it (as MLServer's `MLServerError` does).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from model.validation import describe
from service.responses import ORJSONResponse
from service.schemas import ErrorBody

log = logging.getLogger("service.errors")
MAX_MESSAGE_CHARS = 512


class ServiceError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ServiceError):
    """Invalid input, whatever check finds it: malformed JSON, a body that does not match
    the schema, or values that do not fit the model. Always 400 (as the Open Inference
    Protocol answers invalid requests), so a client needs one rule for its own mistakes."""

    status = 400


class Unauthorized(ServiceError):
    status = 401


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class PayloadTooLarge(ServiceError):
    status = 413


class UriTooLong(ServiceError):
    status = 414


class UnsupportedMediaType(ServiceError):
    status = 415


class ReloadRefused(ServiceError):
    """A bundle failed to load or verify; the model that was serving still is."""

    status = 422


class HeadersTooLarge(ServiceError):
    status = 431


class NotReady(ServiceError):
    status = 503


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


def url_too_long(limit: int) -> UriTooLong:
    return UriTooLong(f"URL longer than {limit} bytes")


def headers_too_large(limit: int) -> HeadersTooLarge:
    return HeadersTooLarge(f"request headers larger than {limit} bytes")


def error_body(message: str) -> dict[str, str]:
    if len(message) > MAX_MESSAGE_CHARS:  # messages quote input: never echo a megabyte back
        message = message[:MAX_MESSAGE_CHARS] + "... (truncated)"
    return {"error": message}


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
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return error_response(exc.status, exc.message, headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(InvalidInput.status, describe_validation(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
