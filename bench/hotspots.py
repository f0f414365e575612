"""Where a request's server time goes: afm-serve (one worker, in-process) under cProfile
while wrk loads one request kind, then the functions by own time.

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \\
        .venv/bin/python -m bench.hotspots predict-1 [--seconds 5] [--connections 16]

cProfile inflates Python calls (C calls much less), so read the shares, not the times.
"""

from __future__ import annotations

import argparse
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench import loadgen
from bench.process import HOST, MALLOC_ENV, free_port
from bench.scenarios import scenarios
from bench.serve import DEFAULT_RUN

READY_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.hotspots", description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", help="ping, live, predict-1, predict-256, ...-explain")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_RUN)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    scenario = scenarios(args.model_dir)[args.scenario]
    with tempfile.TemporaryDirectory(prefix="afm-profile-") as tmp:
        stats, port = Path(tmp) / "serve.prof", free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "cProfile", "-o", str(stats), "-m", "service.cli",
             "--model-dir", str(args.model_dir), "--host", HOST, "--port", str(port)],
            env={**os.environ, **MALLOC_ENV}, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            _wait(port)
            script = loadgen.write_script(Path(tmp), scenario.name, scenario.request)
            url = f"http://{HOST}:{port}{scenario.request.path}"
            result = loadgen.run(url, script, args.connections, args.seconds, 1)
        finally:  # SIGINT: uvicorn re-raises it after shutdown, cProfile still writes
            _stop(server)
        print(f"{result.requests} requests, {result.rate:,.0f}/s under cProfile\n")
        pstats.Stats(str(stats)).sort_stats("tottime").print_stats(args.top)
    return 0


def _stop(server: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    except ProcessLookupError:
        server.wait()


def _wait(port: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/readyz", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("afm-serve did not become ready")


if __name__ == "__main__":
    sys.exit(main())
