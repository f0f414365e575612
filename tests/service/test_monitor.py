"""Drift monitoring (service/core/monitor.py): the window slides, workers' counts are summed
before a PSI is computed, a reload starts the window again, and /metrics exports the
statistics only when monitoring is on and the bundle has a reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from model.bundle import Bundle
from service.app import create_app
from service.core.monitor import Monitor, Watched
from service.ops.shared_counts import SharedCounts
from tests.helpers import TOKEN, SettingsFactory
from tests.helpers.bundles import copy_bundle

AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def instances(count: int, seed: int, shifted: bool = False) -> list[dict[str, str]]:
    """Uniform values of the synthetic model; `shifted`: f2 takes only three values."""
    rng = np.random.default_rng(seed)
    out = [{f"f{i}": f"v{rng.integers(0, 30)}" for i in range(6)} for _ in range(count)]
    if shifted:
        for instance in out:
            instance["f2"] = f"v{rng.integers(0, 3)}"
    return out


@pytest.fixture(scope="module")
def model(bundle_dir: Path) -> tuple[Bundle, Watched]:
    bundle = Bundle.load(bundle_dir)
    watched = Watched.of(bundle)
    assert watched is not None
    return bundle, watched


def observe(monitor: Monitor, model: tuple[Bundle, Watched], rows: list[dict[str, str]]) -> None:
    bundle, watched = model
    encoded = bundle.features.encode(rows)
    monitor.observe(watched, encoded.indices, encoded.weights,
                    bundle.run(encoded.indices, encoded.weights))


def psi_of(monitor: Monitor, watched: Watched) -> dict[str, float]:
    report = monitor.report(watched)
    assert report is not None and report.psi is not None
    return dict(zip(report.fields, report.psi, strict=True))


def test_a_shifted_field_moves_its_psi_and_old_counts_leave_the_window(
        model: tuple[Bundle, Watched]) -> None:
    clock = Clock()
    monitor = Monitor(window_s=60, steps=6, min_instances=100, clock=clock)
    observe(monitor, model, instances(3000, seed=1, shifted=True))
    psi = psi_of(monitor, model[1])
    assert psi["f2"] > 0.25 and all(v < 0.1 for f, v in psi.items() if f != "f2"), psi
    clock.now += 30
    observe(monitor, model, instances(3000, seed=2))
    assert 0.1 < psi_of(monitor, model[1])["f2"] < psi["f2"]  # half the window shifted
    clock.now += 45  # the shifted bucket is older than the window now
    observe(monitor, model, instances(100, seed=3))
    report = monitor.report(model[1])
    assert report is not None and report.instances == 3100
    assert psi_of(monitor, model[1])["f2"] < 0.1


def test_too_few_instances_report_no_psi(model: tuple[Bundle, Watched]) -> None:
    monitor = Monitor(window_s=60, steps=6, min_instances=500, clock=Clock())
    observe(monitor, model, instances(499, seed=1))
    report = monitor.report(model[1])
    assert report is not None and report.instances == 499
    assert report.psi is None and report.score_psi is None and report.oov_online == {}
    assert all(np.isnan(report.pair_online))


def test_workers_counts_are_summed_before_the_psi(model: tuple[Bundle, Watched],
                                                  tmp_path: Path) -> None:
    """Two workers, one seeing shifted traffic: the merged PSI is that of all the traffic,
    not the mean of the workers' PSIs."""
    clock = Clock()
    workers = [Monitor(60, 6, 100, SharedCounts(tmp_path, worker=n), clock) for n in (1, 2)]
    alone = Monitor(60, 6, 100, clock=clock)
    shifted, plain = instances(2000, seed=1, shifted=True), instances(2000, seed=2)
    observe(workers[0], model, shifted)
    observe(workers[1], model, plain)
    for rows in (shifted, plain):
        observe(alone, model, rows)
    workers[1].publish()
    merged = psi_of(workers[0], model[1])
    assert merged == pytest.approx(psi_of(alone, model[1]))
    report = workers[0].report(model[1])
    assert report is not None and report.instances == 4000


def test_a_new_model_starts_the_window_again(model: tuple[Bundle, Watched],
                                             tmp_path: Path) -> None:
    bundle, watched = model
    monitor = Monitor(60, 6, 10, clock=Clock())
    observe(monitor, model, instances(50, seed=1))
    other = Watched.of(Bundle.load(copy_bundle(bundle.directory, tmp_path / "v2", version="2")))
    assert other is not None
    report = monitor.report(other)
    assert report is not None and report.instances == 0  # counts of the old model do not count


def scrape(client: TestClient) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def serve(settings: Any) -> TestClient:
    return TestClient(create_app(settings, registry=CollectorRegistry()))


def test_metrics_export_drift_when_monitoring_is_on(make_settings: SettingsFactory) -> None:
    with serve(make_settings(monitor=True, monitor_min_instances=200)) as client:
        for start in range(0, 600, 100):
            rows = instances(100, seed=start, shifted=True)
            assert client.post("/predict", json={"instances": rows}).status_code == 200
        found = scrape(client)
    assert found["afm_drift_window_instances"][()] == 600
    psi = {dict(k)["field"]: v for k, v in found["afm_drift_psi"].items()}
    assert psi["f2"] > 0.25 and psi["f0"] < 0.1
    assert found["afm_drift_score_psi"][()] >= 0
    pairs = found["afm_pair_contribution"]
    assert {dict(k)["source"] for k in pairs} == {"online", "reference"}
    assert len(pairs) == 2 * 15
    assert set(found["afm_drift_oov_share"]) >= {(("field", "f0"), ("source", "online"))}


def test_no_drift_series_without_monitoring_or_a_reference(make_settings: SettingsFactory,
                                                           bundle_dir: Path, tmp_path: Path) -> None:
    unreferenced = copy_bundle(bundle_dir, tmp_path / "old", reference=None)
    for settings in (make_settings(), make_settings(model_dir=unreferenced, monitor=True,
                                                     monitor_min_instances=1)):
        with serve(settings) as client:
            assert client.post("/predict", json={"instances": instances(5, 0)}).status_code == 200
            names = set(scrape(client))
        assert not {n for n in names if n.startswith(("afm_drift", "afm_pair_contribution"))}


def test_a_reload_starts_the_window_again(make_settings: SettingsFactory,
                                          models_root: Path) -> None:
    settings = make_settings(model_dir=models_root / "v1", models_root=models_root,
                             admin_token=TOKEN, monitor=True, monitor_min_instances=1)
    with serve(settings) as client:
        client.post("/predict", json={"instances": instances(40, 0)})
        assert scrape(client)["afm_drift_window_instances"][()] == 40
        assert client.post("/admin/reload", headers=AUTH, json={"model_dir": "v2"}).is_success
        client.post("/predict", json={"instances": instances(3, 0)})
        assert scrape(client)["afm_drift_window_instances"][()] == 3
