"""What bounding the request head costs: uvicorn's httptools protocol against afm-serve's.

    .venv/bin/python -m bench.protocol

Feeds one typical request (a 60-byte /predict body, five headers) to each protocol
20,000 times, in turns, with an app that answers at once; prints the median over seven
rounds of the time a request, in microseconds (parsing, the task, the response write).
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import time
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from service.http.bounded_protocol import BoundedHttpToolsProtocol
from service.settings import Settings

ROUNDS = 7
REQUESTS = 20_000
REQUEST = (b"POST /predict HTTP/1.1\r\nhost: 127.0.0.1:8000\r\nuser-agent: wrk\r\naccept: */*\r\n"
           b"content-type: application/json\r\ncontent-length: 60\r\n\r\n" + b" " * 60)


class Transport:
    """The part of an asyncio transport the protocols use; writes are dropped."""

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 40000)}.get(name)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})


async def per_request(protocol_class: Any) -> float:
    config = Config(app=app, log_config=None, lifespan="off")
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(Transport())
    start = time.perf_counter()
    for _ in range(REQUESTS):
        protocol.data_received(REQUEST)
        await asyncio.sleep(0)  # the request's task runs
    return (time.perf_counter() - start) / REQUESTS * 1e6


async def run() -> dict[str, float]:
    fields = Settings.model_fields
    bounded = functools.partial(BoundedHttpToolsProtocol,
                                max_url_bytes=fields["max_url_bytes"].default,
                                max_header_bytes=fields["max_header_bytes"].default)
    protocols = {"uvicorn HttpToolsProtocol": HttpToolsProtocol,
                 "BoundedHttpToolsProtocol": bounded}
    times: dict[str, list[float]] = {name: [] for name in protocols}
    for _ in range(ROUNDS):
        for name, protocol_class in protocols.items():
            times[name].append(await per_request(protocol_class))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    print("| protocol | µs a request |\n|---|---:|")
    for name, value in asyncio.run(run()).items():
        print(f"| {name} | {value:.2f} |")


if __name__ == "__main__":
    main()
