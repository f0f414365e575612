"""Two worker processes under wrk load; one is killed with SIGKILL. The server replaces it,
the failed requests stay few (counted and reported), and the metrics still add up: a
scrape's /predict count matches what wrk received, within the requests the dead worker
had in flight and those wrk abandoned when it stopped."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from bench import harness
from tests.helpers.bundles import models_root
from tests.helpers.servers import (
    PREDICTED,
    count,
    knob,
    post_predict,
    reliability_env,
    report,
    require_wrk,
    serve,
    worker_files,
)

pytestmark = pytest.mark.slow
LOAD_S = knob("KILL_LOAD_S", 12)
CONNECTIONS = 16


def predicted(url: str) -> float:
    with httpx.Client(timeout=10) as fresh:
        return count(fresh.get(url + "/metrics").text, *PREDICTED)


def test_a_killed_worker_is_replaced_and_errors_stay_bounded(bundle_dir: Path,
                                                             tmp_path: Path) -> None:
    require_wrk()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    root = models_root(tmp_path / "models", bundle_dir)
    env = reliability_env(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    args = ["--model-dir", str(root / "v1"), "--workers", "2"]
    with serve(args, env, tmp_path / "serve.log") as (url, supervisor):
        deadline = time.monotonic() + 30
        while len(worker_files(metrics_dir)) < 2:  # both workers have counted a request
            assert post_predict(url) == 200
            assert time.monotonic() < deadline, "the second worker never answered"
        before = predicted(url)
        workers = worker_files(metrics_dir)
        load = harness.start_wrk(url + "/predict", LOAD_S, CONNECTIONS)
        try:
            time.sleep(LOAD_S / 3)
            victim = int(sorted(workers)[0].split("_")[1])
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            while not worker_files(metrics_dir) - workers:
                assert time.monotonic() - killed_at < 30, "the killed worker was not replaced"
                time.sleep(0.1)
            replaced_s = time.monotonic() - killed_at
        finally:
            result = harness.finish_wrk(load, timeout=LOAD_S + 60)
        assert supervisor.poll() is None
        counted = predicted(url) - before
        errors = result.socket_errors + result.non_2xx
        report("worker_kill", {**result.figures(), "errors": errors,
                               "replaced_after_s": round(replaced_s, 2),
                               "wrk_2xx": result.ok, "metrics_predict_200": counted})
        assert errors <= CONNECTIONS, result
        # The server counts requests wrk dropped: the dead worker's in flight (errors) and
        # those in flight when wrk stopped (at most one a connection).
        assert -CONNECTIONS <= counted - result.ok <= errors + CONNECTIONS, (counted, result.ok)
        assert post_predict(url) == 200
