"""The real `afm-serve` in processes for tests, through bench.harness: started on a free
127.0.0.1 port, ready, always stopped; wrk for load; what a scrape and the workers'
metrics files say; the reliability tests' knobs and report."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import ServerProcess, wrk_path
from tests.helpers import INSTANCE, TOKEN
from tests.helpers.bundles import models_root

READY_TIMEOUT_S = 60
PREDICTED = ("afm_requests_total", {"route": "/predict", "method": "POST", "status": "200"})
REPORT_ENV = "RELIABILITY_REPORT"


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AFM_", "PROMETHEUS_"))}
    env.update({"AFM_LOG_LEVEL": "warning", **extra})
    return env


def reliability_env(**extra: str) -> dict[str, str]:
    """The server's environment, without the test runner's glibc tuning for torch (no
    heap trimming, no mmap for large blocks), which a deployed server would not have."""
    env = server_env(**extra)
    return {k: v for k, v in env.items() if not k.startswith("MALLOC_")}


@contextmanager
def serve(args: list[str], env: dict[str, str],
          log: Path) -> Iterator[tuple[str, Popen[bytes]]]:
    """Start afm-serve, wait until ready, and always stop it (its whole process group)."""
    server = ServerProcess(args, env, log)
    with server:
        server.wait_ready(READY_TIMEOUT_S)
        yield server.url, server.process


def require_wrk() -> str:
    path = wrk_path()
    if path is None:
        pytest.skip("wrk is not installed (Debian: apt-get install wrk); load tests need it")
    return path


def post_predict(url: str) -> int:
    with httpx.Client(timeout=10) as fresh:  # a new connection: workers share the load
        return fresh.post(url + "/predict", json={"instances": [INSTANCE]}).status_code


def count(text: str, metric: str, labels: dict[str, str]) -> float:
    return sum(
        s.value for family in text_string_to_metric_families(text) for s in family.samples
        if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items())
    )


def per_worker(directory: Path, scratch: Path,
               metric: tuple[str, dict[str, str]] = PREDICTED) -> dict[str, float]:
    """/predict requests (or `metric`) each worker counted, read from its own metrics file alone."""
    counts = {}
    for path in directory.glob("counter_*.db"):
        alone = scratch / path.stem
        alone.mkdir(parents=True)
        shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, str(alone))
        counts[path.stem] = count(generate_latest(registry).decode(), *metric)
    return counts


def worker_files(metrics_dir: Path) -> set[str]:
    return {path.stem for path in metrics_dir.glob("counter_*.db")}


def knob(name: str, default: float) -> float:
    """A duration or count: RELIABILITY_<NAME> when set (the long form), else the CI value."""
    return float(os.environ.get(f"RELIABILITY_{name}", default))


def report(section: str, figures: dict[str, object]) -> None:
    """Print a test's figures and, under the long-form script, append them to its report."""
    line = json.dumps({"section": section, **figures})
    print(line)
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "a") as out:
            out.write(line + "\n")


def rss_kib(pid: int) -> int:
    """Resident memory of one process, from /proc/PID/status (VmRSS, KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


@dataclass(frozen=True)
class Server:
    url: str
    process: Popen[bytes]
    root: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None and httpx.get(self.url + "/healthz", timeout=5).is_success


@contextmanager
def start_server(base: Path, bundle: Path) -> Iterator[Server]:
    """One worker serving v1 of a models root, reloads allowed inside it, warmed up."""
    root = models_root(base / "models", bundle)
    env = reliability_env(AFM_MODELS_ROOT=str(root), AFM_ADMIN_TOKEN=TOKEN)
    with serve(["--model-dir", str(root / "v1")], env, base / "serve.log") as (url, process):
        with httpx.Client(timeout=10) as client:  # warm up: first requests allocate caches
            for _ in range(50):
                client.post(url + "/predict", json={"instances": [INSTANCE], "explain": True})
        yield Server(url, process, root)
