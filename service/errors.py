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
    """The request is well-formed HTTP but its content does not fit the model."""

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


class SchemaMismatch(ServiceError):
    """Well-formed JSON that does not match the request schema."""

    status = 422


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
        (400, "Malformed JSON, or input that does not fit the model"),
        (401, "No bearer token"),
        (403, "Wrong bearer token, or a path outside the models root"),
        (404, "No such model, version or bundle"),
        (413, "Body or batch over the limit"),
        (414, "URL over the limit (AFM_MAX_URL_BYTES)"),
        (415, "Content-Type other than JSON"),
        (422, "Body that does not match the schema, or a bundle refused by a reload"),
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
    """The first validation problem as one line: `body.instances.0.f1: Input should be ...`."""
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return error_response(exc.status, exc.message, headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    malformed = any(e.get("type") == "json_invalid" for e in exc.errors())
    status = 400 if malformed else 422
    message = "malformed JSON body" if malformed else describe_validation(exc)
    return error_response(status, message)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
