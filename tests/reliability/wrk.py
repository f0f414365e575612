"""`wrk` driven from tests: bounded in time, on 127.0.0.1, results parsed from the JSON line
that bench/reliability/predict.lua prints. Tests skip (with the install command) when the
wrk binary is missing; nothing is installed for them."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import REPO

SCRIPT = REPO / "bench" / "reliability" / "predict.lua"
MARKER = "WRK_RESULT "


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int
    non_2xx: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)

    @property
    def socket_errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if status.startswith("2"))

    def figures(self) -> dict[str, object]:
        return {"requests": self.requests, "seconds": self.seconds, "non_2xx": self.non_2xx,
                "socket_errors": self.socket_errors, "p50_ms": self.p50_ms,
                "p99_ms": self.p99_ms, "max_ms": self.max_ms, "rps": round(self.requests / self.seconds)}


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        pytest.skip("wrk is not installed (Debian: apt-get install wrk); load tests need it")
    return path


def start(url: str, seconds: float, connections: int = 16, threads: int = 2,
          script: Path = SCRIPT) -> subprocess.Popen[str]:
    """wrk running in the background against url; collect it with `finish`."""
    args = [require_wrk(), "-t", str(threads), "-c", str(connections), "-d", f"{seconds:.0f}s",
            "--timeout", "10s", "-s", str(script), url]
    assert url.startswith("http://127.0.0.1:"), url
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def finish(process: subprocess.Popen[str], timeout: float) -> WrkResult:
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    for line in output.splitlines():
        if line.startswith(MARKER):
            return WrkResult(**json.loads(line.removeprefix(MARKER)))
    raise AssertionError(f"wrk printed no result:\n{output}")


def run(url: str, seconds: float, connections: int = 16, threads: int = 2) -> WrkResult:
    return finish(start(url, seconds, connections, threads), timeout=seconds + 60)
