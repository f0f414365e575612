"""Explanations of a batch as tensors: Open Inference Protocol infer of 256 instances with
every pair's attention and contribution as binary tensors, against the score alone, and
against /predict with explain {"top_k": 3} (JSON) and plain /predict, side by side.

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \\
        .venv/bin/python -m bench.explain_tensors [--seconds 3] [--repeats 5]

One server per bundle of bench.serve's shapes (the synthetic 6-field AFM, and the 39-field
Criteo-shaped one, both trained once if missing), one worker each, at one connection, and a
third on the 39-field bundle with AFM_TRIM_AFTER_BYTES=0: every pair of 256 instances of
741 pairs is a 1.5 MB answer, past the size after which the service hands freed heap back to
the OS (256 KiB by default), and the trim, and the page faults that refill the heap after
it, are most of what the pairs cost. The loads are interleaved round by round and the
figures are medians. The same 256 instances throughout: the infer requests carry them
encoded (`indices`, `weights`).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from contextlib import ExitStack

from bench import report
from bench.harness import ServerProcess, wrk_path
from bench.scenarios import Load, scenarios, tensor_scenarios
from bench.serve import MALLOC_ENV, SHAPES, bundle_dir, command, measure, shape_bundle

LOADS = ("predict-256", "predict-256-top3", "infer-256-score", "infer-256-pairs")
TRIM_OFF = "39 fields, AFM_TRIM_AFTER_BYTES=0"
log = logging.getLogger("bench.explain_tensors")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.explain_tensors", description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    args.model_dir, args.paper = None, False
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    if wrk_path() is None:
        raise SystemExit("wrk is not installed")
    _, run, config, sets = SHAPES[-1]
    criteo = shape_bundle(run, config, sets, args.epochs)
    bundles = {"6 fields (synthetic, 15 pairs)": bundle_dir(args),
               "39 fields (Criteo-shaped, 741 pairs)": criteo, TRIM_OFF: criteo}
    loads = []
    for name, bundle in bundles.items():
        every = {**scenarios(bundle), **tensor_scenarios(bundle)}
        loads += [Load(name, every[scenario], 1) for scenario in LOADS]
    load_before = os.getloadavg()
    with ExitStack() as stack:
        servers = {}
        for name, bundle in bundles.items():
            env = {**os.environ, **MALLOC_ENV, "AFM_LOG_LEVEL": "warning"}
            if name == TRIM_OFF:
                env["AFM_TRIM_AFTER_BYTES"] = "0"
            servers[name] = server = ServerProcess(["--model-dir", str(bundle)], env)
            stack.callback(server.stop)
        for server in servers.values():
            server.wait_ready()
        samples = measure(servers, loads, args)
    table = report.medians(samples)
    lines = [f"    {command(argv).replace('bench.serve', 'bench.explain_tensors')}", "",
             f"- {time.strftime('%Y-%m-%d')}; load average {report.load_text(load_before)} before, "
             f"{report.load_text(os.getloadavg())} after; {args.repeats} rounds of {args.seconds} s "
             "at c1, medians. Each cell: req/s, p50 / p99 ms, server CPU µs a request.", "",
             report.pivot(table, list(bundles))]
    for name in bundles:
        score, pairs = table[(name, "infer-256-score", 1)], table[(name, "infer-256-pairs", 1)]
        top3 = table[(name, "predict-256-top3", 1)]
        lines.append(f"- {name}: every pair as binary tensors {pairs.cpu_us / score.cpu_us - 1:+.0%} "
                     f"server CPU over the score alone (target ≤ +30%); /predict top 3 "
                     f"{top3.cpu_us / score.cpu_us - 1:+.0%}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
