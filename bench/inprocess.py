"""The service timed in-process, without sockets: the profiling tool behind the
before/after figures in docs/BENCHMARKS.md.

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \\
        .venv/bin/python -m bench.inprocess [ping live predict-1 ...] [--concurrency 16]
        [--parts] [--profile N] [--bare]

By default, app CPU a request: ASGI calls straight into `create_app()`, which separates
the app's own cost (routing, middleware, metrics, the model path) from uvicorn's and the
network's; loads are interleaved round by round, figures are medians. `--parts`: the
request path's pieces alone (the body read by pydantic and by the /predict orjson path,
encode, the onnxruntime run, the results and the response plain and explained) for 1 and
256 instances. `--bare`: the bare FastAPI route (`bench/bare.py`)
in the same process beside the service, its /predict loads interleaved with the
service's, and the ratio. `--profile N`: the functions taking the most own time
under cProfile while the chosen requests run (read the shares: cProfile inflates Python
calls more than C calls).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import uvloop
from fastapi import FastAPI

from bench import bare
from bench.harness import Request
from bench.scenarios import BIG, SEED, instance, scenarios
from bench.serve import DEFAULT_RUN
from model.bundle import Bundle
from service.app import create_app
from service.codecs.plain_body import plain_predict_request
from service.codecs.predictions import render_predictions
from service.codecs.schemas import PredictRequest
from service.core.explain import Explainer
from service.http.responses import ORJSONResponse
from service.ops.process import configure_process, freeze_startup_objects
from service.ops.settings import Settings

ROUNDS = 7
BARE = "bare "


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


async def run(args: argparse.Namespace, settings: Settings) -> dict[str, float]:
    app = create_app(settings, after_start=freeze_startup_objects)  # as afm-serve's workers
    chosen = {name: scenarios(args.model_dir)[name] for name in args.scenarios}
    apps = [("", app, chosen)]
    if args.bare:  # the bare route has /predict alone, and no explanations
        apps.append((BARE, bare.create(args.model_dir), {
            name: s for name, s in chosen.items()
            if s.request.path == "/predict" and not s.explain}))
    figures: dict[str, list[float]] = {
        prefix + name: [] for prefix, _, served in apps for name in served}
    async with app.router.lifespan_context(app):
        for _ in range(ROUNDS):
            for name, scenario in chosen.items():
                total = 3000 if scenario.instances <= 1 else 60
                for prefix, served, loads in apps:
                    if name in loads:
                        figures[prefix + name].append(await cpu_per_request(
                            served, scenario.request, total, args.concurrency))
    return {name: statistics.median(values) for name, values in figures.items()}


def timed(fn: Callable[[], object], number: int) -> float:
    """Median over ROUNDS of the mean CPU time of `number` calls, in microseconds (CPU
    time: other jobs on a shared machine change it less than wall time)."""
    fn()
    runs = []
    for _ in range(ROUNDS):
        start = time.process_time()
        for _ in range(number):
            fn()
        runs.append((time.process_time() - start) / number)
    return statistics.median(runs) * 1e6


def pieces(bundle: Bundle, explainer: Explainer,
           instances: list[dict[str, Any]]) -> dict[str, Callable[[], object]]:
    body = orjson.dumps({"instances": instances})
    encoded = bundle.features.encode(instances)
    scores = bundle.run(encoded.indices, encoded.weights)
    plain, top3, every = (render_predictions(explainer.predictions(encoded, scores, explain, top_k))
                          for explain, top_k in ((False, None), (True, 3), (True, None)))
    return {
        "body, pydantic": lambda: PredictRequest.model_validate_json(body),
        "body, orjson path (any size)": lambda: plain_predict_request(body, min_bytes=0),
        "encode": lambda: bundle.features.encode(instances),
        "onnxruntime run": lambda: bundle.run(encoded.indices, encoded.weights),
        "results, plain": lambda: render_predictions(explainer.predictions(encoded, scores, False)),
        "results, top 3 pairs": lambda: render_predictions(
            explainer.predictions(encoded, scores, True, 3)),
        "results, all pairs": lambda: render_predictions(
            explainer.predictions(encoded, scores, True)),
        "response, plain": lambda: ORJSONResponse({"predictions": plain}),
        "response, top 3 pairs": lambda: ORJSONResponse({"predictions": top3}),
        "response, all pairs": lambda: ORJSONResponse({"predictions": every}),
    }


def parts(model_dir: Path) -> None:
    bundle = Bundle.load(model_dir)
    explainer = Explainer(bundle)
    freeze_startup_objects()
    rng = np.random.default_rng(SEED)
    cells: dict[str, list[float]] = {}
    for rows in (1, BIG):
        instances = [instance(bundle.manifest.fields, rng) for _ in range(rows)]
        for name, fn in pieces(bundle, explainer, instances).items():
            cells.setdefault(name, []).append(timed(fn, 2000 if rows == 1 else 40))
    print("| piece | 1 instance µs | 256 instances µs |\n|---|---:|---:|")
    for name, (one, big) in cells.items():
        print(f"| {name} | {one:.1f} | {big:.0f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.inprocess", description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", default=["ping", "live", "predict-1",
                                                         "predict-1-explain"])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_RUN)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--parts", action="store_true", help="time the request path's pieces")
    parser.add_argument("--bare", action="store_true", help="the bare FastAPI route beside the "
                        "service (plain /predict loads only)")
    parser.add_argument("--profile", type=int, metavar="N", help="print the N functions with "
                        "the most own time under cProfile")
    args = parser.parse_args(argv)
    settings = Settings(model_dir=args.model_dir, log_level="info", log_format="json")
    configure_process(settings)  # request log lines are formatted, as in production
    if args.parts:
        parts(args.model_dir)
        return 0
    profile = cProfile.Profile() if args.profile else None
    with open(os.devnull, "w") as devnull:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(devnull)
        if profile is not None:
            profile.enable()
        figures = uvloop.run(run(args, settings))
        if profile is not None:
            profile.disable()
    print(f"| request | app CPU µs a request (c{args.concurrency}, in-process) |\n|---|---:|")
    for name, value in figures.items():
        ratio = (f" ({value / figures[BARE + name]:.3f}x bare)"
                 if BARE + name in figures else "")
        print(f"| {name} | {value:.1f}{ratio} |")
    if profile is not None:
        pstats.Stats(profile).sort_stats(os.environ.get("PROFILE_SORT", "tottime")).print_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
