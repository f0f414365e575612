"""A bundle trained on downsampled negatives, with a calibration map: the service checks the
shift at load and serves the graph's corrected, calibrated probability on every route."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from model.bundle import Bundle, BundleError
from service.app import create_app
from service.core.model import warm_up
from tests.helpers import SettingsFactory
from tests.helpers.bundles import copy_bundle, set_manifest

INSTANCES = [{"user": "3", "item": "27", "context": "41"}, {"user": "12", "item": "20"}, {}]


def test_warm_up_expects_the_bias_plus_the_logit_shift(downsampled_binary: Path,
                                                        tmp_path: Path) -> None:
    directory = copy_bundle(downsampled_binary, tmp_path / "bundle")
    warm_up(Bundle.load(directory), 8)
    # a manifest that does not know the graph adds ln w to every score
    set_manifest(directory, negative_keep_rate=1.0, logit_shift=0.0)
    with pytest.raises(BundleError, match="bias \\+ logit_shift"):
        warm_up(Bundle.load(directory), 8)


def test_every_route_serves_the_graphs_prediction(downsampled_binary: Path,
                                                  make_settings: SettingsFactory) -> None:
    bundle = Bundle.load(downsampled_binary)
    assert bundle.manifest.logit_shift == pytest.approx(np.log(0.2))
    encoded = bundle.features.encode(INSTANCES)
    expected = bundle.run(encoded.indices, encoded.weights)
    settings = make_settings(model_dir=downsampled_binary)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        body = client.post("/predict", json={"instances": INSTANCES}).json()
        served = [p["probability"] for p in body["predictions"]]
        np.testing.assert_allclose(served, expected.prediction, atol=1e-6)
        inputs = [{"name": "indices", "datatype": "INT64", "shape": list(encoded.indices.shape),
                   "data": encoded.indices.ravel().tolist()},
                  {"name": "weights", "datatype": "FP32", "shape": list(encoded.weights.shape),
                   "data": encoded.weights.ravel().tolist()}]
        response = client.post("/v2/models/downsampled/infer",
                               json={"inputs": inputs, "outputs": [{"name": "prediction"}]})
        assert response.status_code == 200, response.text
        (output,) = response.json()["outputs"]
        assert output["name"] == "prediction"
        np.testing.assert_allclose(output["data"], expected.prediction, atol=1e-6)
        explained = client.post("/predict", json={"instances": INSTANCES[:2], "explain": True})
        for prediction in explained.json()["predictions"]:
            explanation = prediction["explanation"]
            assert explanation["logit_shift"] == pytest.approx(np.log(0.2))
            assert explanation["calibration"] == bundle.manifest.calibration.kind == "platt"
            total = (explanation["bias"] + explanation["logit_shift"]
                     + sum(explanation["linear"]["weights"]) + explanation["interaction"])
            assert total == pytest.approx(prediction["score"], abs=1e-5)
    # the empty instance: the bias and the shift only, then the Platt map
    empty = bundle.manifest.bias + bundle.manifest.logit_shift
    assert expected.score[-1] == pytest.approx(empty, abs=1e-5)
    assert expected.prediction[-1] == pytest.approx(bundle.manifest.calibration.probability(
        np.array([empty]))[0], abs=1e-6)
