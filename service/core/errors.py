"""What can go wrong for a caller, free of any web framework: one base class, six kinds.

The runtime raises these; each transport reads them its own way (the HTTP statuses, the
handlers and the refusals of over-long heads live in `service.http.errors`), as
MLServer keeps its errors framework-free and maps them in its REST and gRPC packages.
"""

from __future__ import annotations

MAX_MESSAGE_CHARS = 512


def truncated(message: str) -> str:
    """Messages quote input: never echo a megabyte back, whatever the transport."""
    if len(message) > MAX_MESSAGE_CHARS:
        return message[:MAX_MESSAGE_CHARS] + "... (truncated)"
    return message


class ServiceError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ServiceError):
    """Invalid input, whatever check finds it: malformed JSON, a body that does not match
    the schema, or values that do not fit the model."""


class NotReady(ServiceError):
    """No model is loaded yet (or the service is stopping)."""


class NotFound(ServiceError):
    """No such model, version or bundle."""


class TooLarge(ServiceError):
    """A request over a limit: too many instances, a tensor, a body, a URL or headers."""


class Forbidden(ServiceError):
    """Not allowed: a bundle outside the models root, or a wrong credential."""


class ReloadRefused(ServiceError):
    """A bundle failed to load or verify; the model that was serving still is."""
