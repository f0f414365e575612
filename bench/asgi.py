"""Server CPU a request without sockets: ASGI calls straight into `create_app()`.

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \\
        .venv/bin/python -m bench.asgi [ping live predict-1 ...] [--concurrency 16]

Separates the app's own cost (routing, middleware, metrics, the model path) from uvicorn's
and the network's; loads are interleaved round by round, figures are medians.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import uvloop
from fastapi import FastAPI

from bench.loadgen import Request
from bench.scenarios import scenarios
from bench.serve import DEFAULT_RUN
from service.app import create_app
from service.logs import configure_logging
from service.settings import Settings

ROUNDS = 7


def scope(request: Request) -> dict[str, Any]:
    headers = [(b"host", b"bench")]
    if request.body is not None:
        headers += [(b"content-type", b"application/json"),
                    (b"content-length", str(len(request.body)).encode())]
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": request.method, "scheme": "http", "path": request.path,
            "raw_path": request.path.encode(), "query_string": b"", "root_path": "",
            "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000)}


async def call(app: FastAPI, request: Request) -> None:
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": request.body or b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope(request), receive, send)
    if status != [200]:
        raise RuntimeError(f"{request.method} {request.path}: status {status}")


async def cpu_per_request(app: FastAPI, request: Request, total: int, concurrency: int) -> float:
    async def client() -> None:
        for _ in range(total // concurrency):
            await call(app, request)

    start = time.process_time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return (time.process_time() - start) / (total // concurrency * concurrency) * 1e6


async def run(args: argparse.Namespace) -> dict[str, float]:
    app = create_app(Settings(model_dir=args.model_dir))  # type: ignore[call-arg]
    chosen = {name: scenarios(args.model_dir)[name] for name in args.scenarios}
    figures: dict[str, list[float]] = {name: [] for name in chosen}
    async with app.router.lifespan_context(app):
        for _ in range(ROUNDS):
            for name, scenario in chosen.items():
                total = 3000 if scenario.instances <= 1 else 60
                figures[name].append(await cpu_per_request(app, scenario.request, total,
                                                           args.concurrency))
    return {name: statistics.median(values) for name, values in figures.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.asgi", description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", default=["ping", "live", "predict-1",
                                                         "predict-1-explain"])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_RUN)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    configure_logging("info", "json")  # request log lines are formatted, as in production
    with open(os.devnull, "w") as devnull:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(devnull)
        figures = uvloop.run(run(args))
    print(f"| request | app CPU µs a request (c{args.concurrency}, in-process) |\n|---|---:|")
    for name, value in figures.items():
        print(f"| {name} | {value:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
