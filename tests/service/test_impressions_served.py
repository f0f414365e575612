"""The impression log of a real `afm-serve` with two workers: each worker writes files of its
own, every answered instance is in a closed file within the roll interval with the score it
was answered with, and SIGTERM under traffic leaves only complete files holding everything
that was answered."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from model import impressions as im
from tests.helpers import INSTANCE
from tests.helpers.servers import serve, server_env
from tests.service.test_impressions import log_rows, wait_logged

pytestmark = pytest.mark.slow
ROLL_S = 1.0


def predict(url: str) -> dict[str, float]:
    """One request on a fresh connection (the kernel spreads those over the workers):
    impression id -> the score answered."""
    with httpx.Client(timeout=30) as fresh:
        response = fresh.post(url + "/predict", json={"instances": [INSTANCE, {"f0": "v1"}]})
    response.raise_for_status()
    return {p["impression_id"]: p["score"] for p in response.json()["predictions"]}


def writer_of(path: Path) -> str:
    match = im.PART_NAME.match(path.name)
    assert match is not None, path
    return match.group("worker")


def test_two_workers_log_what_they_answered_and_sigterm_leaves_complete_files(
        bundle_dir: Path, tmp_path: Path) -> None:
    log_dir = tmp_path / "impressions"
    env = server_env(AFM_IMPRESSION_LOG_DIR=str(log_dir), AFM_IMPRESSION_ROLL_SECONDS=str(ROLL_S))
    answered: dict[str, float] = {}
    with serve(["--model-dir", str(bundle_dir), "--workers", "2"], env,
               tmp_path / "serve.log") as (url, process), ThreadPoolExecutor(8) as pool:
        for _ in range(10):  # until both workers have answered and logged
            for scores in pool.map(predict, [url] * 16):
                answered.update(scores)
            rows = wait_logged(log_dir, list(answered), timeout_s=ROLL_S + 10)
            if len({writer_of(row["file"]) for row in rows.values()}) == 2:
                break
        assert len({writer_of(row["file"]) for row in rows.values()}) == 2
        assert all(rows[i][im.SCORE] == score for i, score in answered.items())

        stop, lock = threading.Event(), threading.Lock()

        def traffic() -> None:
            while not stop.is_set():
                try:
                    scores = predict(url)
                except httpx.HTTPError:
                    return  # the server stopped listening
                with lock:
                    answered.update(scores)

        senders = [threading.Thread(target=traffic) for _ in range(4)]
        for sender in senders:
            sender.start()
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=60)
        stop.set()
        for sender in senders:
            sender.join(60)
    assert exit_code in (0, -signal.SIGTERM)
    assert not [p for p in log_dir.rglob("*") if p.is_file() and p.name.startswith(".")]
    rows = log_rows(log_dir)
    assert {i: rows[i][im.SCORE] for i in answered} == answered
    for path in im.part_files(log_dir):  # every file whole: its footer and every row group read
        assert pq.read_table(path).num_rows == pq.read_metadata(path).num_rows > 0
