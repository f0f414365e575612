"""Open Inference Protocol (V2) REST: health, metadata and infer round trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from model.bundle import Bundle
from model.manifest import OUTPUT_NAMES
from service.codecs.schemas import InferenceResponse, OIPModelMetadata, ServerMetadata
from tests.helpers import INSTANCE

INFER = "/v2/models/synthetic-afm/infer"


def tensors(indices: np.ndarray, weights: np.ndarray) -> list[dict[str, Any]]:
    return [
        {"name": "indices", "shape": list(indices.shape), "datatype": "INT64",
         "data": indices.ravel().tolist()},
        {"name": "weights", "shape": list(weights.shape), "datatype": "FP32",
         "data": weights.ravel().tolist()},
    ]


@pytest.fixture(scope="module")
def encoded(bundle_dir: Path) -> tuple[Bundle, np.ndarray, np.ndarray]:
    bundle = Bundle.load(bundle_dir)
    batch = bundle.features.encode([INSTANCE, {"f0": "v1", "f2": "v2"}, {"f5": "v7", "f1": "?"}])
    return bundle, batch.indices, batch.weights


def test_server_and_model_health(client: TestClient) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/synthetic-afm/ready",
                 "/v2/models/synthetic-afm/versions/1/ready"):
        response = client.get(path)
        assert (response.status_code, response.content) == (200, b""), path
    assert client.get("/v2/models/other/ready").status_code == 404
    assert client.get("/v2/models/synthetic-afm/versions/9/ready").status_code == 404


def test_server_and_model_metadata(client: TestClient) -> None:
    server = ServerMetadata.model_validate(client.get("/v2").json())
    assert server.name == "afm-serving"
    for path in ("/v2/models/synthetic-afm", "/v2/models/synthetic-afm/versions/1"):
        meta = OIPModelMetadata.model_validate(client.get(path).json())
        assert meta.versions == ["1"] and meta.platform == "onnxruntime_onnx"
        assert [(t.name, t.datatype, t.shape) for t in meta.inputs] == [
            ("indices", "INT64", [-1, 6, 1]), ("weights", "FP32", [-1, 6, 1])]
        assert [t.name for t in meta.outputs] == list(OUTPUT_NAMES)
    response = client.get("/v2/models/nope")
    assert response.status_code == 404 and "nope" in response.json()["error"]


def test_infer_round_trips_the_bundles_outputs(client: TestClient, encoded: Any) -> None:
    bundle, indices, weights = encoded
    expected = bundle.run(indices, weights)
    response = client.post(INFER, json={"id": "42", "inputs": tensors(indices, weights)})
    assert response.status_code == 200, response.text
    body = InferenceResponse.model_validate(response.json())
    assert (body.model_name, body.model_version, body.id) == ("synthetic-afm", "1", "42")
    outputs = {o.name: o for o in body.outputs}
    assert outputs["score"].shape == [3] and outputs["attention"].shape == [3, 15]
    assert outputs["field_linear"].shape == [3, 6]
    assert outputs["prediction"].shape == [3]
    for name in OUTPUT_NAMES:
        served = np.asarray(outputs[name].data).reshape(outputs[name].shape)
        np.testing.assert_allclose(served, getattr(expected, name), rtol=0, atol=1e-6)


def test_infer_with_version_nested_data_and_chosen_outputs(client: TestClient,
                                                           encoded: Any) -> None:
    bundle, indices, weights = encoded
    inputs = tensors(indices, weights)
    inputs[0]["data"] = indices.tolist()  # the protocol allows nested row-major data
    response = client.post("/v2/models/synthetic-afm/versions/1/infer",
                           json={"inputs": inputs, "outputs": [{"name": "score"}]})
    assert response.status_code == 200, response.text
    assert "id" not in response.json()  # none sent: none answered (not "id": null)
    outputs = response.json()["outputs"]
    assert [o["name"] for o in outputs] == ["score"]
    expected = bundle.run(indices, weights).score
    np.testing.assert_allclose(outputs[0]["data"], expected, rtol=0, atol=1e-6)


def bad(change: dict[str, Any], which: int = 0) -> dict[str, Any]:
    inputs = tensors(np.ones((1, 6, 1), np.int64), np.ones((1, 6, 1), np.float32))
    inputs[which].update(change)
    return {"inputs": inputs}


@pytest.mark.parametrize(("payload", "status", "phrase"), [
    (bad({"shape": [1, 6, 2]}), 400, "holds 12 values, data has 6"),
    (bad({"data": [1, 2, 3]}), 400, "data has 3"),
    (bad({"datatype": "INT32"}), 400, "must be INT64"),
    (bad({"datatype": "FP64"}, which=1), 400, "must be FP32"),
    (bad({"data": [1.5] * 6}), 400, "must be integers"),
    (bad({"data": ["a"] * 6}), 400, "must be integers"),
    (bad({"data": [True] * 6}), 400, "must be integers"),
    (bad({"data": [1, [2], 3, 4, 5, 6]}), 400, "not a regular array"),
    (bad({"data": [-1, 1, 1, 1, 1, 1]}), 400, "indices must lie in"),
    (bad({"data": [10**6] * 6}), 400, "indices must lie in"),
    (bad({"data": [2**70] * 6}), 400, "integers"),
    (bad({"data": ["nan"] * 6}, which=1), 400, "must be numbers"),
    (bad({"data": [1e300] * 6}, which=1), 400, "finite"),
    (bad({"data": [3e38] * 6}, which=1), 400, "score is not finite"),
    (bad({"shape": [6, 1], "data": [1] * 6}), 400, "shape [B, 6, 1]"),
    (bad({"shape": [2, 3, 1]}), 400, "shape [B, 6, 1]"),
    (bad({"shape": [100000, 6, 1]}), 413, "over the limit"),
    (bad({"shape": [-1, 6, 1]}), 400, "shape"),
    (bad({"name": "other"}), 400, "unknown input 'other'"),
    (bad({"name": "weights", "datatype": "FP32"}), 400, "given twice"),
    ({"inputs": bad({})["inputs"][:1]}, 400, "missing input(s) ['weights']"),
    ({"inputs": bad({})["inputs"], "outputs": [{"name": "nope"}]}, 400, "unknown output(s)"),
    ({"inputs": []}, 400, "inputs"),
    ({"id": 5, "inputs": bad({})["inputs"]}, 400, "id"),
])
def test_malformed_tensors_get_4xx(client: TestClient, payload: dict[str, Any], status: int,
                                   phrase: str) -> None:
    response = client.post(INFER, json=payload)
    assert response.status_code == status, response.text
    assert phrase in response.json()["error"]


def test_infer_on_a_model_not_served_is_404(client: TestClient) -> None:
    response = client.post("/v2/models/other/infer", json=bad({}))
    assert response.status_code == 404
    response = client.post("/v2/models/synthetic-afm/versions/7/infer", json=bad({}))
    assert response.status_code == 404 and "version 7" in response.json()["error"]


def test_encode_gives_the_tensors_infer_takes(client: TestClient, mixed_client: TestClient) -> None:
    cases = [
        (client, [INSTANCE, {"f0": "unseen"}, {}], ("f0", "unseen")),
        (mixed_client, [{"user": "u1", "tags": ["a", "b"], "price": 40.0, "age": 30}, {"tags": ["zz"]}],
         ("tags", "zz")),
    ]
    for http, instances, (field, unknown) in cases:
        encoded = http.post("/encode", json={"instances": instances})
        assert encoded.status_code == 200, encoded.text
        body = encoded.json()
        assert body["oov"] == [{"instance": 1, "field": field, "value": unknown}]
        inferred = http.post(body["infer"], json={"inputs": body["inputs"], "outputs": [{"name": "score"}]})
        assert inferred.status_code == 200, inferred.text
        predicted = http.post("/predict", json={"instances": instances}).json()["predictions"]
        np.testing.assert_allclose(inferred.json()["outputs"][0]["data"],
                                   [p["score"] for p in predicted], rtol=1e-6)
    refused = client.post("/encode", json={"instances": [{"nope": 1}]})
    assert refused.status_code == 400 and "unknown field 'nope'" in refused.json()["error"]
