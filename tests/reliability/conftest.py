"""Reliability fixtures: the real `afm-serve` process on 127.0.0.1 over a models root.

Servers come from `tests.service.test_processes.serve`, which waits for readiness and
always stops the whole process group. Durations and example counts have CI defaults and
are raised by `scripts/reliability.sh` through RELIABILITY_* variables.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

import httpx
import pytest

from tests.service.conftest import INSTANCE, TOKEN, copy_bundle
from tests.service.test_processes import serve, server_env

REPORT_ENV = "RELIABILITY_REPORT"


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


def reliability_env(**extra: str) -> dict[str, str]:
    """The server's environment, without the test runner's glibc tuning for torch (no
    heap trimming, no mmap for large blocks), which a deployed server would not have."""
    env = server_env(**extra)
    return {k: v for k, v in env.items() if not k.startswith("MALLOC_")}


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


def models_root(base: Path, bundle: Path) -> Path:
    """v1 and v2 of the synthetic model side by side."""
    root = base / "models"
    copy_bundle(bundle, root / "v1")
    copy_bundle(bundle, root / "v2", version="2")
    return root


@contextmanager
def start_server(base: Path, bundle: Path) -> Iterator[Server]:
    """One worker serving v1, reloads allowed inside its models root, warmed up."""
    root = models_root(base, bundle)
    env = reliability_env(AFM_MODELS_ROOT=str(root), AFM_ADMIN_TOKEN=TOKEN)
    with serve(["--model-dir", str(root / "v1")], env, base / "serve.log") as (url, process):
        with httpx.Client(timeout=10) as client:  # warm up: first requests allocate caches
            for _ in range(50):
                client.post(url + "/predict", json={"instances": [INSTANCE], "explain": True})
        yield Server(url, process, root)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, bundle_dir: Path) -> Iterator[Server]:
    with start_server(tmp_path_factory.mktemp("reliability"), bundle_dir) as started:
        yield started
