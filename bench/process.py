"""The server under test: `afm-serve` on 127.0.0.1 in its own process group.

Its CPU time (every process of the group: uvicorn's supervisor and its workers) is read
from /proc around each load, which gives server CPU per request: a steadier figure than
throughput on a shared, noisy machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
# glibc's allocator returns memory to the OS too eagerly for benchmark loads.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "4294967296"}
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Server:
    """One `afm-serve` process group; `stop()` ends the whole group."""

    def __init__(self, model_dir: Path, workers: int, env: dict[str, str]) -> None:
        self.port = free_port()
        self.workers = workers
        executable = Path(sys.executable).with_name("afm-serve")
        command = [str(executable), "--model-dir", str(model_dir), "--host", HOST,
                   "--port", str(self.port), "--workers", str(workers)]
        self._process = subprocess.Popen(
            command, env={**os.environ, **MALLOC_ENV, **env}, start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until /readyz answers 200 (every worker warmed up answers it the same)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"afm-serve exited {self._process.returncode} before ready")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"afm-serve not ready within {timeout_s:.0f} s")

    def cpu_seconds(self) -> float:
        """User + system CPU of every live process in the server's process group."""
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile
            if int(fields[2]) == self._process.pid:  # pgrp (the session leader's pid)
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / TICKS

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL after a grace period."""
        if self._process.poll() is None:
            _signal_group(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(self._process.pid, signal.SIGKILL)  # stragglers (workers) of the group
        self._process.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
