"""Where a request came from, as the runtime needs to know it: its id and the route that
scored it. Transports make one per request (HTTP from the X-Request-ID the middleware
settled, gRPC from the call's `x-request-id` metadata) and pass it into the runtime, which
stays free of either transport."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Literal

Route = Literal["predict", "explain", "infer", "grpc"]
_VALID_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


@dataclass(frozen=True, slots=True)
class Origin:
    request_id: str
    route: Route  # what scored the instances: /predict, /explain, OIP infer over REST, gRPC


def request_id(given: str | None) -> str:
    """The caller's request id when it is a sane token, else a fresh one (32 hex digits)."""
    if given is not None and _VALID_ID.fullmatch(given):
        return given
    # Not a secret, only unique: a pseudo-random draw needs no system call (os.urandom
    # does, every request); each worker process reseeds after its fork.
    return f"{random.getrandbits(128):032x}"
