"""The impression log's cost: server CPU per request with the log on and off, side by side.

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \\
        .venv/bin/python -m bench.impressions [--model-dir DIR | --criteo] [--seconds 5] [--repeats 5]

Two servers of one worker on one bundle, one of them logging every instance (a temporary
AFM_IMPRESSION_LOG_DIR), run the same wrk loads (1 and 256 instances a request, 1 and 16
connections) interleaved round by round, as bench.serve does; figures are medians over
the rounds. A server's CPU is its process group's, the writer thread's included, and is
also given in two parts: the main thread's (the event loop: the request path) and the other
threads' (the log's writer; onnxruntime runs on the main thread). The
logging server rolls its file every ROLL_S seconds, so every load pays for building,
writing, compressing and closing what it logged rather than leaving rows in a buffer for
the next load. Without --model-dir the synthetic AFM of bench.serve (6 fields); --criteo:
bench.serve's 39-field Criteo bundle (trained once on a generated log).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import statistics
import sys
import tempfile
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import pyarrow.parquet as pq

from bench import report
from bench.harness import WRK_INSTALL_HINT, ServerProcess, wrk_path
from bench.scenarios import Load, scenarios
from bench.serve import SHAPES, Config, bundle_dir, measure, shape_bundle, start
from model import impressions as im
from model.manifest import Manifest

LOADS = [("predict-1", (1, 16)), ("predict-256", (1, 16))]
ROLL_S = 2
OFF, ON = "log off", "log on"
log = logging.getLogger("bench.impressions")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.impressions", description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model-dir", type=Path, help="an existing bundle")
    which.add_argument("--criteo", action="store_true", help="the 39-field Criteo bundle")
    parser.add_argument("--epochs", type=int, default=3, help="epochs when training a bundle")
    parser.add_argument("--seconds", type=int, default=5, help="duration of one load")
    parser.add_argument("--repeats", type=int, default=5, help="rounds; figures are medians")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--sample", type=float, default=1.0,
                        help="AFM_IMPRESSION_SAMPLE of the logging server (share of requests logged)")
    return parser.parse_args(argv)


def model(args: argparse.Namespace) -> Path:
    if args.criteo:
        _, run, config, overrides = SHAPES[-1]
        return shape_bundle(run, config, overrides, args.epochs)
    return bundle_dir(argparse.Namespace(model_dir=args.model_dir, paper=False, epochs=args.epochs))


def scraped(server: ServerProcess, metric: str) -> float:
    """A metric's value summed over its series, from the server's /metrics."""
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(metric))


def compare(args: argparse.Namespace, model_dir: Path, directory: Path) -> str:
    on = Config(ON, 1, None, env=(("AFM_IMPRESSION_LOG_DIR", str(directory)),
                                  ("AFM_IMPRESSION_ROLL_SECONDS", str(ROLL_S)),
                                  ("AFM_IMPRESSION_SAMPLE", str(args.sample))))
    every = scenarios(model_dir)
    loads = [Load(label, every[name], c) for label in (OFF, ON) for name, cs in LOADS for c in cs]
    load_before = os.getloadavg()
    with ExitStack() as stack:
        servers = {OFF: start(Config(OFF, 1, None), model_dir), ON: start(on, model_dir)}
        for server in servers.values():
            stack.callback(server.stop)
            server.wait_ready()
        samples = measure(servers, loads, args)
        dropped = scraped(servers[ON], "afm_impressions_dropped_total")
    table = report.medians(samples)
    files = im.part_files(directory)
    rows = sum(pq.read_metadata(path).num_rows for path in files)
    lines = ["| endpoint | c | log on / log off, CPU a request | request path (main thread) "
             "on / off | writer thread, µs a request (share of log off's CPU) |",
             "|---|---:|---:|---:|---:|"]
    for name, cs in LOADS:
        for c in cs:
            logged, plain = table[(ON, name, c)], table[(OFF, name, c)]
            main_ratio = ((logged.cpu_us - logged.other_threads_cpu_us)
                          / (plain.cpu_us - plain.other_threads_cpu_us))
            writer = logged.other_threads_cpu_us - plain.other_threads_cpu_us
            lines.append(f"| {name} | {c} | {logged.cpu_us / plain.cpu_us:.3f} | "
                         f"{main_ratio:.3f} | {writer:,.0f} ({writer / plain.cpu_us:+.1%}) |")
    return (f"    {command(args)}\n\n"
            f"Bundle {model_dir.name} ({len(Manifest.read(model_dir).fields)} fields); one worker "
            f"each, default batching; {args.repeats} rounds of {args.seconds} s, medians; load "
            f"average {report.load_text(load_before)} before, {report.load_text(os.getloadavg())} "
            "after. Each cell: req/s, p50 / p99 ms, server CPU µs a request.\n\n"
            + report.pivot(table, [OFF, ON]) + "\n" + "\n".join(lines) + "\n\n"
            f"The logging server wrote {rows:,} impressions in {len(files)} files and dropped "
            f"{dropped:,.0f}; median of the ratios above: "
            f"{statistics.median(_ratios(table)):.3f}.\n")


def _ratios(table: report.Table) -> list[float]:
    return [table[(ON, name, c)].cpu_us / table[(OFF, name, c)].cpu_us
            for name, cs in LOADS for c in cs]


def command(args: argparse.Namespace) -> str:
    return ("MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 "
            f".venv/bin/python -m bench.impressions {shlex.join(sys.argv[1:])}").strip()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    if wrk_path() is None:
        raise SystemExit(WRK_INSTALL_HINT)
    model_dir = model(args)
    with tempfile.TemporaryDirectory(prefix="afm-impressions-") as directory:
        print(compare(args, model_dir, Path(directory)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
