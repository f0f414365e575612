"""The real `afm-serve` in processes on 127.0.0.1: several workers, SIGTERM, start-up
failures, and a server that never imports torch. Every process started is stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import SERVE
from model.verification import RECORD_FILE, Identity
from tests.helpers import INSTANCE, TOKEN
from tests.helpers.bundles import copy_bundle
from tests.helpers.servers import PREDICTED, count, per_worker, post_predict, serve, server_env, worker_files

pytestmark = pytest.mark.slow


def test_a_scrape_sums_every_worker(bundle_dir: Path, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = server_env(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    args = ["--model-dir", str(bundle_dir), "--workers", "2"]
    with serve(args, env, tmp_path / "serve.log") as (url, _), ThreadPoolExecutor(8) as pool:
        sent = 0
        while sent < 400:
            statuses = list(pool.map(post_predict, [url] * 40))
            assert statuses == [200] * 40
            sent += 40
            workers = per_worker(metrics_dir, tmp_path / f"scratch{sent}")
            if sum(1 for n in workers.values() if n > 0) >= 2:
                break
        assert sum(1 for n in workers.values() if n > 0) == 2, workers
        for _ in range(6):  # whichever worker answers the scrape, it sees the sum
            with httpx.Client(timeout=10) as fresh:
                text = fresh.get(url + "/metrics").text
            assert count(text, *PREDICTED) == sent
            assert count(text, "afm_instances_scored_total", {}) == sent
            assert count(text, "afm_model_info", {"version": "1"}) == 1
            # process_* per worker, labelled pid (prometheus_client's multiprocess way)
            memory = {s.labels["pid"]: s.value for family in text_string_to_metric_families(text)
                      for s in family.samples if s.name == "process_resident_memory_bytes"}
            assert len(memory) == 2 and all(v > 10e6 for v in memory.values()), memory
            assert count(text, "process_cpu_seconds_total", {}) > 0
            assert count(text, "process_open_fds", {}) > 0


def predicted_version(url: str) -> str:
    with httpx.Client(timeout=10) as fresh:
        response = fresh.post(url + "/predict", json={"instances": [INSTANCE]})
    assert response.status_code == 200
    return str(response.json()["model"]["version"])


def until_every_worker_served(url: str, metrics_dir: Path, scratch: Path,
                              workers: set[str]) -> set[str]:
    """Send requests until each of `workers` counted one more; -> the versions answered."""
    before = per_worker(metrics_dir, scratch / "before")
    versions: set[str] = set()
    with ThreadPoolExecutor(8) as pool:
        for round_ in range(10):
            versions |= set(pool.map(predicted_version, [url] * 40))
            after = per_worker(metrics_dir, scratch / f"after{round_}")
            if all(after.get(w, 0) > before.get(w, 0) for w in workers):
                return versions
    raise AssertionError(f"not every worker of {workers} served: {before} -> {after}")


def two_versions(bundle_dir: Path, tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A models root holding the bundle as versions 1 (v1) and 2 (v2), a multiprocess
    metrics directory, and the server environment that serves them with reloads allowed."""
    root, metrics_dir = tmp_path / "models", tmp_path / "metrics"
    metrics_dir.mkdir()
    copy_bundle(bundle_dir, root / "v1")
    copy_bundle(bundle_dir, root / "v2", version="2")
    env = server_env(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), AFM_MODELS_ROOT=str(root),
                     AFM_ADMIN_TOKEN=TOKEN)
    return root, metrics_dir, env


def test_a_reload_reaches_every_worker_and_their_replacements(bundle_dir: Path,
                                                              tmp_path: Path) -> None:
    root, metrics_dir, env = two_versions(bundle_dir, tmp_path)
    env["AFM_RUN_DIR"] = str(tmp_path / "run")
    (tmp_path / "run").mkdir()
    args = ["--model-dir", str(root / "v1"), "--workers", "2"]
    with serve(args, env, tmp_path / "serve.log") as (url, _):
        response = httpx.post(url + "/admin/reload", json={"model_dir": "v2"},
                              headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert response.status_code == 200, response.text
        time.sleep(2)  # the other worker polls the shared choice every 0.5 s
        # each file's sha256 recorded once for every process: afm-serve's v1, a worker's v2
        recorded = orjson.loads((tmp_path / "run" / RECORD_FILE).read_bytes())
        assert set(recorded) == {Identity.at(root / version / name).key
                                 for version in ("v1", "v2")
                                 for name in ("model.onnx", "model.onnx.data", "vocabulary.arrow")}
        workers = worker_files(metrics_dir)
        assert len(workers) == 2
        assert until_every_worker_served(url, metrics_dir, tmp_path / "a", workers) == {"2"}

        os.kill(int(sorted(workers)[0].split("_")[1]), signal.SIGKILL)  # one of our workers
        deadline = time.monotonic() + 60
        while len(worker_files(metrics_dir) - workers) == 0:  # the supervisor replaces it
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            time.sleep(0.2)
        time.sleep(1)
        replacement = worker_files(metrics_dir) - workers
        versions = until_every_worker_served(url, metrics_dir, tmp_path / "b", replacement)
        assert versions == {"2"}


def scrape_until(url: str, done: Callable[[str], bool], timeout_s: float = 15) -> str:
    """Scrape (a new connection each time, so either worker answers) until `done`."""
    deadline = time.monotonic() + timeout_s
    while True:
        with httpx.Client(timeout=10) as fresh:
            text = fresh.get(url + "/metrics").text
        if done(text) or time.monotonic() > deadline:
            return text
        time.sleep(0.2)


def test_drift_counts_of_every_worker_are_merged(bundle_dir: Path, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = server_env(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), AFM_MONITOR="true",
                     AFM_MONITOR_WINDOW_S="60", AFM_MONITOR_INTERVAL_S="0.5",
                     AFM_MONITOR_MIN_INSTANCES="1")
    args = ["--model-dir", str(bundle_dir), "--workers", "2"]
    with serve(args, env, tmp_path / "serve.log") as (url, _), ThreadPoolExecutor(8) as pool:
        sent = 0
        while sent < 400:
            assert list(pool.map(post_predict, [url] * 40)) == [200] * 40
            sent += 40
            workers = per_worker(metrics_dir, tmp_path / f"scratch{sent}")
            if sum(1 for n in workers.values() if n > 0) >= 2:
                break
        assert sum(1 for n in workers.values() if n > 0) == 2, workers

        def merged(text: str) -> bool:
            return count(text, "afm_drift_window_instances", {}) == sent

        for _ in range(4):  # whichever worker answers, it sums both windows
            text = scrape_until(url, merged)
            assert count(text, "afm_drift_window_instances", {}) == sent
            assert len([line for line in text.splitlines() if line.startswith("afm_drift_psi{")]) == 6


def test_a_shadow_model_reaches_every_worker(bundle_dir: Path, tmp_path: Path) -> None:
    root, metrics_dir, env = two_versions(bundle_dir, tmp_path)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    scored = ("afm_shadow_requests_total", {"outcome": "scored"})
    with serve(["--model-dir", str(root / "v1"), "--workers", "2"], env,
               tmp_path / "serve.log") as (url, _):
        response = httpx.post(url + "/admin/shadow", json={"model_dir": "v2", "fraction": 1.0},
                              headers=auth, timeout=30)
        assert response.status_code == 200, response.text
        time.sleep(2)  # the other worker polls the shared choice every 0.5 s
        workers = worker_files(metrics_dir)
        until_every_worker_served(url, metrics_dir, tmp_path / "a", workers)
        time.sleep(1)  # shadow scoring runs after the answers
        shadowed = per_worker(metrics_dir, tmp_path / "s1", scored)
        assert len(shadowed) == 2 and all(n > 0 for n in shadowed.values()), shadowed

        assert httpx.delete(url + "/admin/shadow", headers=auth, timeout=30).status_code == 200
        time.sleep(2)
        until_every_worker_served(url, metrics_dir, tmp_path / "b", workers)
        time.sleep(1)
        assert per_worker(metrics_dir, tmp_path / "s2", scored) == shadowed  # no worker shadows


def wait_in_flight(url: str, requests: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        metrics = httpx.get(url + "/metrics", timeout=10).text
        if count(metrics, "afm_requests_in_flight", {}) >= requests:
            return
        time.sleep(0.02)
    raise AssertionError(f"{requests} requests were not in flight within {timeout_s} s")


def post_held(url: str, release: threading.Event) -> int:
    """/predict whose body is sent in two chunks, the second once `release` is set: the
    request stays in flight until then (a lone request is scored at once, so the batcher's
    wait cannot hold one)."""
    body = orjson.dumps({"instances": [INSTANCE]})

    def chunks() -> Iterator[bytes]:
        yield body[:10]
        release.wait(30)
        yield body[10:]

    with httpx.Client(timeout=30) as fresh:
        return fresh.post(url + "/predict", content=chunks(),
                          headers={"content-type": "application/json"}).status_code


def test_sigterm_drains_requests_in_flight(bundle_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    release = threading.Event()
    with serve(["--model-dir", str(bundle_dir)], server_env(), log) as (url, process), \
            ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(post_held, url, release) for _ in range(6)]
        try:
            wait_in_flight(url, 6)  # every request's body half read: SIGTERM arrives now
            process.send_signal(signal.SIGTERM)
            time.sleep(0.5)  # the server is shutting down while they wait
        finally:
            release.set()
        assert [f.result(timeout=30) for f in futures] == [200] * 6
        # uvicorn re-raises the signal once it has drained: the exit reads as SIGTERM.
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)


def test_afm_serve_refuses_a_broken_bundle_with_one_line(bundle_dir: Path,
                                                         tmp_path: Path) -> None:
    broken = copy_bundle(bundle_dir, tmp_path / "broken")
    (broken / "model.onnx").write_bytes(b"not a model")
    result = subprocess.run([*SERVE, "--model-dir", str(broken)], env=server_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("afm-serve: cannot serve: ")
    assert "does not match" in lines[0]


def test_afm_serve_refuses_bad_settings(tmp_path: Path) -> None:
    result = subprocess.run([*SERVE, "--model-dir", str(tmp_path / "none")], env=server_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "invalid setting model_dir" in result.stderr and "Traceback" not in result.stderr


TORCHLESS = """
import importlib, pkgutil, sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is not available to the server")

sys.meta_path.insert(0, NoTorch())
import service
for module in pkgutil.walk_packages(service.__path__, "service."):
    importlib.import_module(module.name)
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from service.app import create_app
from service.ops.settings import Settings

settings = Settings(model_dir=sys.argv[1])
with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
    instance = {"f0": "v1", "f1": "v2", "f2": "v3"}
    assert client.post("/predict", json={"instances": [instance], "explain": True}).is_success
    assert client.get("/explain", params=instance).is_success
assert "torch" not in sys.modules
print("served without torch")
"""


def test_the_server_never_imports_torch(bundle_dir: Path) -> None:
    result = subprocess.run([sys.executable, "-c", TORCHLESS, str(bundle_dir)],
                            env=server_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "served without torch" in result.stdout


def test_afm_serve_says_the_port_is_busy_before_loading(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([*SERVE, "--model-dir", str(tmp_path), "--port", str(port)],
                                env=server_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"afm-serve: cannot listen on 127.0.0.1:{port}")
