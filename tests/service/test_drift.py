"""Planted drift: traffic from the synthetic generator with one field's distribution shifted
and one pair's interaction changed. Exactly that field's PSI and that pair's contribution
cross the alert thresholds (deploy/prometheus/rules.yml); every other field, pair and the
unshifted traffic stay under them.

The model is the synthetic AFM with 8 fields, where f0-f1, f2-f3 and f4-f5 interact and f6,
f7 take part in no planted pair. (A Criteo-shaped AFM trained on a generated log of test
size learns no pair above the others, so the generator of planted pairs is the one that
shows what pair drift means.)
"""

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
from tests.helpers import SettingsFactory, cached_bundle
from training.synthetic import SyntheticSpec, generate

WATCH, ACT = 0.1, 0.25  # PSI: AFMFieldDrift* and AFMScoreDrift*
RATIO_WATCH, RATIO_ACT = 1.5, 2.0  # pair contribution online / reference: AFMPairContribution*
FIELDS = 8
ROWS = 8000
Instance = dict[str, Any]


@pytest.fixture(scope="module")
def watched_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("drift") / "afm8"
    return cached_bundle("synthetic-afm.toml", out, [f"data.synthetic.num_fields={FIELDS}",
                                                     "train.epochs=40"])


def traffic(rows: int, seed: int) -> list[Instance]:
    """What the generator's world sends: every field uniform over its 30 values."""
    instances, _ = generate(SyntheticSpec(num_fields=FIELDS, rows=rows, seed=seed))
    return list(instances)


def weakest_partners(bundle: Bundle, rows: list[Instance]) -> dict[str, str]:
    """f0 value -> the f1 value to pair it with: a one-to-one map (so f1 stays uniform)
    giving the pair (f0, f1) the least total |contribution| by the model, found greedily and
    improved by swaps. Traffic that follows it changes the pair's interaction and neither
    field's distribution."""
    space = bundle.features
    pair = space.pairs.index((0, 1))
    values = space.fields[1].vocabulary
    first = np.array([space.fields[0].vocabulary.index(r["f0"]) for r in rows])
    cost = np.zeros((len(values), len(values)))  # (f0 value, f1 value) summed |contribution|
    for j, value in enumerate(values):
        encoded = space.encode([{**r, "f1": value} for r in rows])
        np.add.at(cost[:, j], first, np.abs(bundle.run(encoded.indices, encoded.weights)
                                            .contributions[:, pair]))
    partner = np.full(len(values), -1)
    for i, j in zip(*np.unravel_index(np.argsort(cost, axis=None), cost.shape), strict=True):
        if partner[i] < 0 and j not in partner:
            partner[i] = j
    swapped = True
    while swapped:
        swapped = False
        for a in range(len(values)):
            for b in range(a + 1, len(values)):
                pa, pb = partner[a], partner[b]
                if cost[a, pb] + cost[b, pa] < cost[a, pa] + cost[b, pb] - 1e-12:
                    partner[a], partner[b], swapped = pb, pa, True
    return {values[i]: values[j] for i, j in enumerate(partner)}


def shifted(rows: list[Instance], partners: dict[str, str], seed: int) -> list[Instance]:
    """f6 takes only 3 of its 30 values; f1 follows f0 by `partners`."""
    rng = np.random.default_rng(seed)
    return [{**r, "f6": f"v{rng.integers(0, 3)}", "f1": partners[r["f0"]]} for r in rows]


def observed(settings: Any, rows: list[Instance]) -> tuple[dict[str, float], float, dict[str, float]]:
    """Send the rows to /predict, then read each field's PSI, the score's PSI and each
    material pair's contribution ratio from /metrics."""
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        for start in range(0, len(rows), 250):
            response = client.post("/predict", json={"instances": rows[start:start + 250]})
            assert response.status_code == 200
        text = client.get("/metrics").text
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = s.labels.get("field") or s.labels.get("pair") or ""
            found.setdefault(s.name, {})[key] = s.value
    return found["afm_drift_psi"], found["afm_drift_score_psi"][""], found["afm_pair_contribution_ratio"]


@pytest.fixture(scope="module")
def partners(watched_bundle: Path) -> dict[str, str]:
    return weakest_partners(Bundle.load(watched_bundle), traffic(2000, seed=101))


def test_traffic_like_the_training_data_stays_under_every_threshold(
        make_settings: SettingsFactory, watched_bundle: Path) -> None:
    psi, score_psi, ratios = observed(make_settings(model_dir=watched_bundle, monitor=True),
                                      traffic(ROWS, seed=99))
    assert len(psi) == FIELDS and max(psi.values()) < WATCH, psi
    assert score_psi < WATCH
    assert set(ratios) == {"f0,f1", "f2,f3", "f4,f5"}  # the material pairs: the planted ones
    assert all(1 / RATIO_WATCH < r < RATIO_WATCH for r in ratios.values()), ratios


def test_exactly_the_shifted_field_and_the_changed_pair_cross_the_thresholds(
        make_settings: SettingsFactory, watched_bundle: Path, partners: dict[str, str]) -> None:
    rows = shifted(traffic(ROWS, seed=99), partners, seed=7)
    psi, _, ratios = observed(make_settings(model_dir=watched_bundle, monitor=True), rows)
    assert {f for f, v in psi.items() if v > ACT} == {"f6"}, psi
    assert {f for f, v in psi.items() if v > WATCH} == {"f6"}, psi  # f1 stays uniform
    moved = {p for p, r in ratios.items() if not 1 / RATIO_WATCH < r < RATIO_WATCH}
    assert moved == {"f0,f1"}, ratios
    assert ratios["f0,f1"] < 1 / RATIO_ACT, ratios
