"""Shadow scoring under load, on the real process: with a shadow model scoring every
request while wrk drives /predict, no live request fails, none takes longer than a bound,
every answer is the live model's, and the shadow scores (dropping, and counting, what its
queue cannot hold)."""

from __future__ import annotations

import time

import httpx
import pytest

from bench import harness
from tests.helpers import TOKEN
from tests.helpers.servers import Server, count, knob, report, require_wrk

pytestmark = pytest.mark.slow
LOAD_S = knob("SHADOW_S", 10)
CONNECTIONS = int(knob("CONNECTIONS", 16))
BOUND_MS = knob("SHADOW_BOUND_MS", 2000)  # far above any p99 here: a request held up, not a slow one
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_shadow_scoring_never_fails_or_holds_up_a_live_request(server: Server) -> None:
    require_wrk()
    url = server.url + "/predict"
    alone = harness.run_wrk(url, LOAD_S / 2, CONNECTIONS)
    response = httpx.post(server.url + "/admin/shadow", headers=AUTH, timeout=60,
                          json={"model_dir": "v2", "fraction": 1.0})
    assert response.status_code == 200, response.text
    try:
        shadowed = harness.run_wrk(url, LOAD_S, CONNECTIONS)
        deadline = time.monotonic() + 30
        while True:  # the shadow model finishes what its queue holds after the load
            metrics = httpx.get(server.url + "/metrics", timeout=30).text
            offered = sum(count(metrics, "afm_shadow_requests_total", {"outcome": outcome})
                          for outcome in ("scored", "dropped", "failed"))
            if offered >= shadowed.requests or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        httpx.delete(server.url + "/admin/shadow", headers=AUTH, timeout=60)
    scored = count(metrics, "afm_shadow_requests_total", {"outcome": "scored"})
    dropped = count(metrics, "afm_shadow_requests_total", {"outcome": "dropped"})
    failed = count(metrics, "afm_shadow_requests_total", {"outcome": "failed"})
    report("shadow under load", {**shadowed.figures(), "connections": CONNECTIONS,
                                 "p99_ms_without": alone.p99_ms, "shadow_scored": scored,
                                 "shadow_dropped": dropped, "shadow_failed": failed})
    assert shadowed.requests > 0
    assert shadowed.non_2xx == 0 and shadowed.socket_errors == 0, shadowed
    assert shadowed.max_ms < BOUND_MS, shadowed
    assert set(shadowed.versions) == {"1"}  # the live model answered every request
    assert scored > 0 and failed == 0
    assert scored + dropped >= shadowed.requests  # every request offered, scored or dropped
    assert server.alive()
