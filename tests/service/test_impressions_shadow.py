"""The impression log with a shadow model: the instances it scores carry its version, score
and prediction beside the live ones; without one, at fraction 0, or when it is removed,
fails or is slower than the bound, the shadow columns are null and no live row is lost or
written twice."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from model import impressions as im
from model.bundle import Bundle
from service.app import create_app
from tests.helpers import TOKEN, SettingsFactory
from tests.helpers.bundles import copy_bundle
from tests.service.test_impressions import wait_logged
from tests.service.test_shadow import AUTH, instances, runtime, settle, shadow

SHADOW_COLUMNS = (im.SHADOW_MODEL_VERSION, im.SHADOW_SCORE, im.SHADOW_PREDICTION)
SIZE = 4  # instances a request


@pytest.fixture
def root(models_root: Path, synthetic_fm: Path) -> Path:
    """v1 (live), v2 (the same model) and fm (another model of the same fields)."""
    copy_bundle(synthetic_fm, models_root / "fm", version="7")
    return models_root


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "impressions"


@pytest.fixture
def served(make_settings: SettingsFactory, root: Path, log_dir: Path) -> TestClient:
    """A server with the impression log and the shadow routes, to enter with `with`: its log
    is complete once the block exits (a graceful stop)."""
    settings = make_settings(model_dir=root / "v1", models_root=root, admin_token=TOKEN,
                             impression_log_dir=log_dir, impression_roll_seconds=0.2,
                             impression_shadow_wait_s=0.5)
    return TestClient(create_app(settings, registry=CollectorRegistry()))


def all_rows(directory: Path) -> list[dict[str, Any]]:
    """Every row of the closed files, duplicates kept."""
    return [row for path in im.part_files(directory) for row in pq.read_table(path).to_pylist()]


def predict(client: TestClient, requests: range) -> dict[str, dict[str, Any]]:
    """Each request's answer by impression id (`r<k>-<position>`)."""
    answers = {}
    for k in requests:
        response = client.post("/predict", json={"instances": instances(SIZE, k)},
                               headers={"X-Request-ID": f"r{k}"})
        assert response.status_code == 200
        answers.update({p["impression_id"]: p for p in response.json()["predictions"]})
    return answers


def by_id(rows: list[dict[str, Any]], answers: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The rows by impression id, once each: exactly the instances answered."""
    found = {row[im.IMPRESSION_ID]: row for row in rows}
    assert len(found) == len(rows) and set(found) == set(answers)
    return found


def test_shadow_scores_are_logged_beside_the_live_ones(served: TestClient, root: Path,
                                                       log_dir: Path) -> None:
    with served as client:
        assert shadow(client, "fm").status_code == 200
        answers = predict(client, range(6))
        settle(client, 6)
    rows = by_id(all_rows(log_dir), answers)
    fm = Bundle.load(root / "fm")
    for k in range(6):
        expected = fm.run(*_tensors(fm, instances(SIZE, k)))
        for position in range(SIZE):
            row = rows[f"r{k}-{position}"]
            assert (row[im.MODEL_VERSION], row[im.SHADOW_MODEL_VERSION]) == ("1", "7")
            assert row[im.SCORE] == answers[f"r{k}-{position}"]["score"]
            assert row[im.SHADOW_SCORE] == pytest.approx(float(expected.score[position]),
                                                         abs=1e-6)
            assert row[im.SHADOW_PREDICTION] == pytest.approx(
                float(expected.prediction[position]), abs=1e-6)
    assert any(abs(row[im.SHADOW_SCORE] - row[im.SCORE]) > 1e-3 for row in rows.values())


def test_tensor_requests_log_the_shadow_of_the_same_feature_space(served: TestClient,
                                                                  log_dir: Path) -> None:
    with served as client:
        assert shadow(client, "v2").status_code == 200
        inputs = client.post("/encode", json={"instances": instances(SIZE, 0)}).json()["inputs"]
        response = client.post("/v2/models/synthetic-afm/infer", json={"inputs": inputs},
                               headers={"X-Request-ID": "t"})
        assert response.status_code == 200
        settle(client, 1)
    rows = by_id(all_rows(log_dir), {f"t-{i}": None for i in range(SIZE)})
    for row in rows.values():
        assert row[im.SHADOW_MODEL_VERSION] == "2"
        assert row[im.SHADOW_SCORE] == pytest.approx(row[im.SCORE], abs=1e-6)
        assert row[im.SHADOW_PREDICTION] == pytest.approx(row[im.PREDICTION], abs=1e-6)


def test_no_shadow_or_fraction_zero_leaves_the_columns_null(served: TestClient,
                                                            log_dir: Path) -> None:
    with served as client:
        answers = predict(client, range(3))
        assert shadow(client, "fm", fraction=0.0).status_code == 200
        answers |= predict(client, range(3, 6))
    assert_null(by_id(all_rows(log_dir), answers))


def test_a_shadow_removed_midway_leaves_nulls_and_loses_no_row(
        served: TestClient, log_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first offer is held inside the shadow's run past the log's bound, the others wait
    in its queue when it is removed: every row is written once, with null shadow columns."""
    with served as client:
        assert shadow(client, "fm").status_code == 200
        candidate = runtime(client).shadow.model
        assert candidate is not None
        running, release = threading.Event(), threading.Event()
        run = candidate.bundle.run

        def held(*args: Any) -> Any:
            running.set()
            release.wait(10)
            return run(*args)

        monkeypatch.setattr(candidate.bundle, "run", held)
        answers = predict(client, range(1))
        assert running.wait(10)
        answers |= predict(client, range(1, 5))
        assert client.delete("/admin/shadow", headers=AUTH).status_code == 200
        answers |= predict(client, range(5, 7))
        wait_logged(log_dir, list(answers))  # the held offer's record too: past its bound
        release.set()
    assert_null(by_id(all_rows(log_dir), answers))


def test_a_failing_shadow_leaves_nulls_and_loses_no_row(
        served: TestClient, log_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with served as client:
        assert shadow(client, "fm").status_code == 200
        candidate = runtime(client).shadow.model
        assert candidate is not None

        def broken(*_: Any) -> Any:
            raise RuntimeError("the shadow model broke")

        monkeypatch.setattr(candidate.bundle, "run", broken)
        answers = predict(client, range(4))
        settle(client, 4)
    assert_null(by_id(all_rows(log_dir), answers))


def assert_null(rows: dict[str, dict[str, Any]]) -> None:
    assert all(row[column] is None for row in rows.values() for column in SHADOW_COLUMNS)


def _tensors(bundle: Bundle, values: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    encoded = bundle.features.encode(values)
    return encoded.indices, encoded.weights
