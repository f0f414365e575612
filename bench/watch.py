"""What watching a served model costs: drift monitoring on against off, and a shadow model at
fraction 1 against none, side by side; the memory of one bundle loaded and of two.

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \\
        .venv/bin/python -m bench.watch [--model-dir DIR | --criteo] [--seconds 5] [--repeats 5]

Four servers run at once on the same bundle, one worker each: `plain` (AFM_MONITOR off, no
shadow) twice, the second a control that shows what the machine's noise alone makes of two
identical servers, `monitor` (AFM_MONITOR on, folding its window every second rather than
every 10 s, so that every load pays for its own counting) and `shadow` (a copy of the
bundle as its shadow model, scoring every request). On a shared machine the monitoring's
cost is below the noise between two identical servers, so the script also times in-process
what monitoring adds an instance (the request's append and its share of the fold). The
loads are interleaved round by round, as in bench.serve, and the figures are medians: req/s,
p50 / p99 ms and server CPU µs a request. Memory is each server's resident set after the
loads. Without --model-dir the synthetic AFM of bench.serve is used; --criteo trains (once)
and uses bench.serve's 39-field bundle.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
import timeit
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from bench import report
from bench.harness import ServerProcess, wrk_path
from bench.scenarios import Load, request_rows, scenarios
from bench.serve import MALLOC_ENV, SHAPES, bundle_dir, command, measure, shape_bundle
from model.bundle import Bundle
from model.manifest import Manifest
from service.core.monitor import Monitor, Watched

TOKEN = "bench-watch-token-0123456789"
LOADS = [("predict-1", 1), ("predict-1", 16), ("predict-256", 1)]
SERVERS = ("plain", "plain again", "monitor", "shadow")  # "plain again": the noise floor
SCRAPES = 20
log = logging.getLogger("bench.watch")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.watch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="a bundle with a drift reference")
    parser.add_argument("--criteo", action="store_true", help="the 39-field bundle of bench.serve")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    args.paper = False
    return args


def chosen_bundle(args: argparse.Namespace) -> Path:
    if args.criteo:
        _, run, config, sets = SHAPES[-1]
        return shape_bundle(run, config, sets, args.epochs)
    return bundle_dir(args)


def start(label: str, root: Path) -> ServerProcess:
    env = {**os.environ, **MALLOC_ENV, "AFM_MODELS_ROOT": str(root), "AFM_ADMIN_TOKEN": TOKEN,
           "AFM_LOG_LEVEL": "warning"}
    if label == "monitor":
        env.update(AFM_MONITOR="true", AFM_MONITOR_INTERVAL_S="1", AFM_MONITOR_WINDOW_S="900")
    return ServerProcess(["--model-dir", str(root / "live")], env)


def set_shadow(server: ServerProcess) -> None:
    response = httpx.post(server.url + "/admin/shadow", json={"model_dir": "candidate", "fraction": 1.0},
                          headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    response.raise_for_status()


def monitoring_us(bundle_dir: Path) -> dict[str, float]:
    """In-process: what monitoring adds per instance (the request's append and its share of
    the next fold), for 1-instance and 256-instance requests; best of several repeats."""
    bundle = Bundle.load(bundle_dir)
    watched = Watched.of(bundle)
    out = {}
    for label, rows, requests in (("1-instance requests", 0, 2048), ("256-instance requests", 1, 32)):
        encoded = bundle.features.encode(request_rows(bundle.manifest.fields)[rows])
        batch = (watched, encoded.indices, encoded.weights,
                 bundle.run(encoded.indices, encoded.weights))
        monitor = Monitor(900, 900, 1000)
        fold(monitor, batch, requests)  # the window's arrays made once, as in a server
        best = min(timeit.repeat(partial(fold, monitor, batch, requests), number=1, repeat=20))
        out[label] = best / (requests * len(encoded.indices)) * 1e6
    return out


def fold(monitor: Monitor, batch: tuple[Any, ...], requests: int) -> None:
    for _ in range(requests):
        monitor.observe(*batch)
    monitor.flush()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def scrape_cost(server: ServerProcess) -> float:
    """Server CPU ms of one /metrics scrape (the drift report is computed then)."""
    with httpx.Client(timeout=30) as client:
        client.get(server.url + "/metrics")
        before = server.cpu_seconds()
        for _ in range(SCRAPES):
            client.get(server.url + "/metrics").raise_for_status()
        return (server.cpu_seconds() - before) / SCRAPES * 1e3


def shadow_outcomes(server: ServerProcess) -> str:
    text = httpx.get(server.url + "/metrics", timeout=30).text
    lines = [line for line in text.splitlines() if line.startswith("afm_shadow_requests_total{")]
    return ", ".join(line.split("outcome=")[1].replace('"}', ":") for line in lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    if wrk_path() is None:
        raise SystemExit("wrk is not installed")
    bundle = chosen_bundle(args)
    manifest = Manifest.read(bundle)
    if manifest.reference is None:
        raise SystemExit(f"{bundle} has no drift reference: train it again with this code")
    all_scenarios = scenarios(bundle)
    loads = [Load(label, all_scenarios[name], c) for label in SERVERS for name, c in LOADS]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp, ExitStack() as stack:
        for name in ("live", "candidate"):
            shutil.copytree(bundle, Path(tmp) / name)
        servers = {}
        for label in SERVERS:
            servers[label] = server = start(label, Path(tmp))
            stack.callback(server.stop)
        for server in servers.values():
            server.wait_ready()
        set_shadow(servers["shadow"])
        time.sleep(1)
        samples = measure(servers, loads, args)
        time.sleep(2)
        rss = {label: rss_mib(server.pid) for label, server in servers.items()}
        scrape_ms = scrape_cost(servers["monitor"])
        outcomes = shadow_outcomes(servers["shadow"])
    table = report.medians(samples)
    added = monitoring_us(bundle)
    lines = [f"    {command(argv).replace('bench.serve', 'bench.watch')}", "",
             f"- {time.strftime('%Y-%m-%d')}; model `{manifest.name}` ({len(manifest.fields)} fields, "
             f"{len(manifest.pairs)} pairs); load average {report.load_text(load_before)} before, "
             f"{report.load_text(os.getloadavg())} after; {args.repeats} rounds of {args.seconds} s, "
             "medians.",
             "- Each cell: req/s, p50 / p99 ms, server CPU µs a request.", "",
             report.pivot(table, list(SERVERS))]
    for name, c in LOADS:
        plain, again, monitor, shadow = (table[(label, name, c)].cpu_us for label in SERVERS)
        lines.append(f"- {name} c{c}: server CPU over plain: plain again {again / plain - 1:+.1%}, "
                     f"monitor {monitor / plain - 1:+.1%}, shadow {shadow / plain - 1:+.1%}")
    lines += [f"- resident memory after the loads: plain (one bundle) {rss['plain']:.0f} MiB, "
              f"monitor {rss['monitor']:.0f} MiB, shadow (two bundles) {rss['shadow']:.0f} MiB",
              f"- one /metrics scrape with monitoring on: {scrape_ms:.1f} ms of server CPU",
              "- monitoring in-process, CPU µs an instance: " + ", ".join(
                  f"{k} {v:.2f}" for k, v in added.items()),
              f"- shadow requests by outcome: {outcomes}"]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
