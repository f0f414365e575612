"""wrk as the load generator: a lua script per request kind, bounded runs, parsed results.

The lua `done` hook prints one machine-readable line (`BENCH {...}`) with the request
count, the errors and the latency percentiles, so nothing depends on wrk's human format.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MARKER = "BENCH "
INSTALL_HINT = "wrk is not installed: `sudo apt-get install -y wrk` (Debian/Ubuntu package)"
TIMEOUT_MARGIN_S = 30

DONE_HOOK = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "socket_errors": %d, "non2xx": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


@dataclass(frozen=True)
class Request:
    """What every request of one load sends."""

    method: str
    path: str
    body: bytes | None = None


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def wrk_path() -> str:
    """The wrk executable, or SystemExit with how to install it (never installed silently)."""
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit(INSTALL_HINT)
    return path


def write_script(directory: Path, name: str, request: Request) -> Path:
    """A lua script setting the method, JSON body and the `done` hook."""
    lines = [f'wrk.method = "{request.method}"']
    if request.body is not None:
        body = request.body.decode()
        if "]==]" in body:
            raise ValueError("request body cannot be embedded in a lua long string")
        lines += ['wrk.headers["Content-Type"] = "application/json"', f"wrk.body = [==[{body}]==]"]
    path = directory / f"{name}.lua"
    path.write_text("\n".join(lines) + "\n" + DONE_HOOK)
    return path


def run(url: str, script: Path, connections: int, seconds: int, threads: int) -> Result:
    """One bounded wrk run against `url`; wrk never gets more threads than connections."""
    command = [
        wrk_path(), f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds}s",
        "--timeout", "10s", "-s", str(script), url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          timeout=seconds + TIMEOUT_MARGIN_S)
    return parse(done.stdout, done.returncode, done.stderr)


def parse(stdout: str, returncode: int = 0, stderr: str = "") -> Result:
    """The `BENCH {...}` line of wrk's output as a Result."""
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER):])
            return Result(
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                errors=data["socket_errors"] + data["non2xx"],
                p50_ms=data["p50_us"] / 1e3,
                p99_ms=data["p99_us"] / 1e3,
            )
    raise RuntimeError(f"wrk exited {returncode} without a result: {(stderr or stdout).strip()[:500]}")
