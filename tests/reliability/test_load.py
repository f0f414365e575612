"""Load and soak with wrk on 127.0.0.1: no non-2xx answer, no socket error, and resident
memory after the soak within 5% of what it was after warm-up."""

from __future__ import annotations

import threading
import time

import pytest

from bench import harness
from tests.helpers.servers import Server, knob, report, require_wrk, rss_kib

pytestmark = pytest.mark.slow
WARMUP_S = knob("WARMUP_S", 5)
SOAK_S = knob("SOAK_S", 30)
CONNECTIONS = int(knob("CONNECTIONS", 16))
MAX_RSS_GROWTH = 0.05


def sample_rss(pid: int, stop: threading.Event, samples: list[int]) -> None:
    while not stop.wait(1.0):
        samples.append(rss_kib(pid))


def test_soak_answers_everything_and_memory_stays_flat(server: Server) -> None:
    require_wrk()
    url = server.url + "/predict"
    warm = harness.run_wrk(url, WARMUP_S, CONNECTIONS)
    assert warm.non_2xx == 0 and warm.socket_errors == 0, warm
    time.sleep(1)
    before = rss_kib(server.pid)
    samples: list[int] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(server.pid, stop, samples), daemon=True)
    sampler.start()
    try:
        soak = harness.run_wrk(url, SOAK_S, CONNECTIONS)
    finally:
        stop.set()
        sampler.join(timeout=5)
    time.sleep(1)
    after = rss_kib(server.pid)
    report("soak", {**soak.figures(), "connections": CONNECTIONS, "warmup_s": WARMUP_S,
                    "rss_before_kib": before, "rss_after_kib": after,
                    "rss_peak_kib": max(samples, default=after),
                    "rss_growth_pct": round(100 * (after - before) / before, 2)})
    assert soak.requests > 0
    assert soak.non_2xx == 0 and soak.socket_errors == 0, soak
    assert set(soak.versions) == {"1"}
    assert after <= before * (1 + MAX_RSS_GROWTH), (before, after)
    assert server.alive()
