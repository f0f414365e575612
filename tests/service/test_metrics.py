"""Prometheus metrics move as requests are made; probes and scrapes are not counted."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.ops.metrics import LATENCY_BUCKETS, SCORE_BUCKETS, add, observe, observe_many
from tests.helpers import INSTANCE, SettingsFactory

JSON = {"content-type": "application/json"}


def samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics", follow_redirects=False)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(table: dict[tuple[str, frozenset[tuple[str, str]]], float], metric: str,
          **labels: str) -> float:
    return table.get((metric, frozenset(labels.items())), 0.0)


def test_metrics_move_as_requests_are_made(client: TestClient) -> None:
    before = samples(client)
    for _ in range(3):
        assert client.post("/predict", json={"instances": [INSTANCE, {"f1": "new"}]}).is_success
    assert client.post("/predict", json={"instances": [{"zz": 1}]}).status_code == 400
    after = samples(client)

    def moved(metric: str, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    assert moved("afm_requests_total", route="/predict", method="POST", status="200") == 3
    assert moved("afm_requests_total", route="/predict", method="POST", status="400") == 1
    assert moved("afm_request_duration_seconds_count", route="/predict") == 4
    assert moved("afm_instances_scored_total") == 6
    assert moved("afm_oov_values_total", field="f1") == 3
    assert moved("afm_model_run_duration_seconds_count") == 3
    assert moved("afm_batch_size_count") == 3 and moved("afm_batch_size_sum") == 6
    assert moved("afm_predicted_score_count") == 6
    assert value(after, "afm_requests_in_flight") == 0
    assert value(after, "afm_model_info", name="synthetic-afm", version="1",
                 sha256=client.get("/metadata").json()["sha256"]) == 1


def test_latency_buckets_run_from_100_microseconds_to_1_second(client: TestClient) -> None:
    client.post("/predict", json={"instances": [INSTANCE]})
    buckets = {
        dict(labels)["le"] for name, labels in samples(client)
        if name == "afm_request_duration_seconds_bucket"
    }
    assert {"0.0001", "1.0", "+Inf"} <= buckets


def test_probes_and_scrapes_are_not_counted(client: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"):
        assert client.get(path).status_code == 200
    routes = {dict(labels).get("route") for name, labels in samples(client)
              if name.startswith("afm_request")}
    assert routes == {None}  # only the unlabelled in-flight gauge


def test_unmatched_paths_share_one_label(client: TestClient) -> None:
    for path in ("/a", "/b", "/c/d"):
        client.get(path)
    table = samples(client)
    assert value(table, "afm_requests_total", route="unmatched", method="GET", status="404") == 3


def test_docs_and_refused_bodies_keep_their_route(make_settings: SettingsFactory) -> None:
    app = create_app(make_settings(max_body_bytes=1024), registry=CollectorRegistry())
    with TestClient(app) as client:
        for path in ("/docs", "/openapi.json", "/docs/assets/swagger-ui.css"):
            assert client.get(path).status_code == 200
        big = b"x" * 2048
        assert client.post("/predict", content=big, headers=JSON).status_code == 413
        assert client.post("/v2/models/m/infer", content=big, headers=JSON).status_code == 413
        table = samples(client)
    for route in ("/docs", "/openapi.json", "/docs/assets"):
        assert value(table, "afm_requests_total", route=route, method="GET", status="200") == 1
    for route in ("/predict", "/v2/models/{name}/infer"):
        assert value(table, "afm_requests_total", route=route, method="POST", status="413") == 1
    assert not any(dict(labels).get("route") == "unmatched" for _, labels in table)


def test_a_single_process_exports_its_process_metrics(client: TestClient) -> None:
    table = samples(client)
    assert value(table, "process_resident_memory_bytes") > 10e6
    assert value(table, "process_cpu_seconds_total") > 0 and value(table, "process_open_fds") > 0


def collected(metric: Histogram | Counter | Gauge) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name.split("_", 1)[1], s.labels, s.value)
            for family in metric.collect() for s in family.samples
            if not s.name.endswith("_created")]


def test_the_fast_paths_count_as_prometheus_client_does() -> None:
    values = [0.0, 1e-4, 3e-4, 0.001, 0.7, 5.0, *LATENCY_BUCKETS]  # bounds land in their bucket
    mine, theirs = (Histogram(name, "", ["route"], buckets=LATENCY_BUCKETS,
                              registry=CollectorRegistry()) for name in ("a_h", "b_h"))
    for value in values:
        observe(mine.labels("/p"), value)
        theirs.labels("/p").observe(value)
    assert collected(mine) == collected(theirs)
    for kind in (Counter, Gauge):
        ours, plain = (kind(name, "", registry=CollectorRegistry()) for name in ("a_m", "b_m"))
        for amount in (1, 3, 0.5):
            add(ours, amount)
            plain.inc(amount)
        assert collected(ours) == collected(plain)


@pytest.mark.parametrize("count", [3, 500])
def test_observe_many_matches_observing_one_by_one(count: int) -> None:
    rng = np.random.default_rng(count)
    values = np.concatenate([rng.normal(0, 4, count), np.asarray(SCORE_BUCKETS)])
    bulk = Histogram("bulk", "", buckets=SCORE_BUCKETS, registry=CollectorRegistry())
    single = Histogram("single", "", buckets=SCORE_BUCKETS, registry=CollectorRegistry())
    observe_many(bulk, values.astype(np.float32))
    for v in values.astype(np.float32).tolist():
        single.observe(v)
    got = [(s.name[4:], s.labels, s.value) for s in next(iter(bulk.collect())).samples]
    want = [(s.name[6:], s.labels, s.value) for s in next(iter(single.collect())).samples]
    assert [g[:2] for g in got] == [w[:2] for w in want]
    np.testing.assert_allclose([g[2] for g in got], [w[2] for w in want], rtol=1e-6)
