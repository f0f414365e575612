"""The one harness of the benchmarks (bench/) and the load tests (tests/reliability):
`afm-serve` started on a free 127.0.0.1 port and stopped by its PID, and wrk run against it
with bench/wrk.lua, bounded in time, its figures parsed.

A server runs in its own process group, so its CPU time (supervisor and workers) can be
read from /proc around a load, and nothing of it outlives `stop()`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"
SERVE = [sys.executable, "-m", "service.cli"]
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
WRK_SCRIPT = Path(__file__).resolve().with_name("wrk.lua")
WRK_MARKER = "WRK_RESULT "
WRK_INSTALL_HINT = "wrk is not installed: `sudo apt-get install -y wrk` (Debian/Ubuntu package)"
WRK_TIMEOUT_MARGIN_S = 60
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`afm-serve ARGS --host 127.0.0.1 --port <free>` with exactly `env`; output to `log`.
    `command` replaces afm-serve (another server taking --host and --port, ready when
    `ready_path` answers 200), `cwd` runs it in another tree (`python -m` imports from
    there first)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path | None = None,
                 command: list[str] = SERVE, cwd: Path | None = None,
                 ready_path: str = "/readyz") -> None:
        self.port = free_port()
        self.log = log
        self.ready_path = ready_path
        with log.open("wb") if log is not None else open(os.devnull, "wb") as out:
            self.process = subprocess.Popen(
                [*command, *args, "--host", HOST, "--port", str(self.port)], env=env, cwd=cwd,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until `ready_path` answers 200; RuntimeError (with the log) if it exits or times out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"afm-serve exited {self.process.returncode} before ready"
                                   f"{self._log_tail()}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"afm-serve not ready within {timeout_s:.0f} s{self._log_tail()}")

    def cpu_seconds(self) -> float:
        """User + system CPU of every live process in the server's process group."""
        return sum(self.cpu_split())

    def cpu_split(self) -> tuple[float, float]:
        """The CPU of `cpu_seconds` in two parts: the processes' main threads (where uvicorn
        runs the event loop and the requests) and every other thread (a writer thread,
        onnxruntime's pools)."""
        main = other = 0
        for stat in Path("/proc").glob("[0-9]*/task/[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile
            if int(fields[2]) != self.pid:  # pgrp (the session leader's pid)
                continue
            ticks = int(fields[11]) + int(fields[12])  # utime, stime
            if stat.parts[2] == stat.parts[4]:  # /proc/PID/task/TID/stat: TID == PID
                main += ticks
            else:
                other += ticks
        return main / TICKS, other / TICKS

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM to the server's PID (it drains and stops its workers), then SIGKILL to
        whatever of its process group is left."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def _log_tail(self) -> str:
        if self.log is None or not self.log.is_file():
            return ""
        return ":\n" + self.log.read_text(errors="replace")[-4000:]


@dataclass(frozen=True)
class Request:
    """What every request of one load sends."""

    method: str
    path: str
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()  # besides Content-Type: application/json


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
    statuses: dict[str, int] = field(default_factory=dict)  # only when responses are counted
    versions: dict[str, int] = field(default_factory=dict)  # ... likewise

    @property
    def socket_errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if status.startswith("2"))

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def figures(self) -> dict[str, object]:
        return {"requests": self.requests, "seconds": self.seconds, "non_2xx": self.non_2xx,
                "socket_errors": self.socket_errors, "p50_ms": self.p50_ms,
                "p99_ms": self.p99_ms, "max_ms": self.max_ms, "rps": round(self.rate)}


# Request bodies written for running wrk processes, by PID; removed by finish_wrk.
_body_files: dict[int, str] = {}


def wrk_path() -> str | None:
    """The wrk executable, or None (it is never installed for you: WRK_INSTALL_HINT)."""
    return shutil.which("wrk")


def start_wrk(url: str, seconds: float, connections: int = 16, threads: int = 2,
              request: Request | None = None, count: bool = True) -> subprocess.Popen[str]:
    """wrk loading `url` (127.0.0.1 only) in the background; collect it with `finish_wrk`.
    Without `request`, POSTs of one /predict instance; `count`: responses by status and
    model version (costs wrk CPU, which shares the cores with the server)."""
    assert url.startswith(f"http://{HOST}:"), url
    executable = wrk_path()
    if executable is None:
        raise RuntimeError(WRK_INSTALL_HINT)
    env = {**os.environ, "WRK_COUNT": "1" if count else "0"}
    body_file = None
    if request is not None:
        env["WRK_METHOD"] = request.method
        # A file, not an environment variable: Linux caps one variable at 128 KiB, and a
        # 256-instance body of a 39-field model is larger.
        with tempfile.NamedTemporaryFile("wb", suffix=".wrk-body", delete=False) as f:
            f.write(request.body or b"")
        env["WRK_BODY_FILE"] = body_file = f.name
        env["WRK_HEADERS"] = "\n".join(f"{name}: {value}" for name, value in request.headers)
    command = [executable, "-t", str(min(threads, connections)), "-c", str(connections),
               "-d", f"{seconds:.0f}s", "--timeout", "10s", "-s", str(WRK_SCRIPT), url]
    try:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, start_new_session=True)
    except BaseException:
        if body_file is not None:
            os.unlink(body_file)
        raise
    if body_file is not None:
        _body_files[process.pid] = body_file
    return process


def finish_wrk(process: subprocess.Popen[str], timeout: float) -> WrkResult:
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        body_file = _body_files.pop(process.pid, None)
        if body_file is not None:
            os.unlink(body_file)
    for line in output.splitlines():
        if line.startswith(WRK_MARKER):
            return WrkResult(**json.loads(line.removeprefix(WRK_MARKER)))
    raise RuntimeError(f"wrk exited {process.returncode} without a result: {output.strip()[:500]}")


def run_wrk(url: str, seconds: float, connections: int = 16, threads: int = 2,
            request: Request | None = None, count: bool = True) -> WrkResult:
    """One bounded wrk run (see `start_wrk`)."""
    process = start_wrk(url, seconds, connections, threads, request, count)
    return finish_wrk(process, timeout=seconds + WRK_TIMEOUT_MARGIN_S)
