"""The gRPC reading of `service.core.errors`: a status code per kind, looked up along the MRO.

Invalid input is INVALID_ARGUMENT whichever check finds it; nothing a caller sends can
give INTERNAL, which only an unexpected failure of the server does.
"""

from __future__ import annotations

from grpc import StatusCode

from service.core.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    NotReady,
    ReloadRefused,
    ServiceError,
    TooLarge,
)

CODES: dict[type[ServiceError], StatusCode] = {
    ServiceError: StatusCode.INTERNAL, InvalidInput: StatusCode.INVALID_ARGUMENT,
    NotReady: StatusCode.UNAVAILABLE, NotFound: StatusCode.NOT_FOUND,
    TooLarge: StatusCode.RESOURCE_EXHAUSTED, Forbidden: StatusCode.PERMISSION_DENIED,
    ReloadRefused: StatusCode.FAILED_PRECONDITION,
}


def code_of(error: ServiceError) -> StatusCode:
    for kind in type(error).__mro__:
        code = CODES.get(kind)
        if code is not None:
            return code
    return StatusCode.INTERNAL
