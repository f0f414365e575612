"""POST /predict and GET /explain on real bundles: the same scores as afm-eval, and
explanations that add up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from model.bundle import Bundle
from service.codecs.schemas import ExplainResponse, ImportanceResponse, PredictResponse
from tests.helpers import INSTANCE
from training.cli import eval_main
from training.synthetic import SyntheticSpec, generate


def rows(count: int) -> list[dict[str, str]]:
    instances, _ = generate(SyntheticSpec(rows=max(count, 10), seed=11))
    return instances[:count]


def test_scores_over_http_equal_afm_eval(client: TestClient, bundle_dir: Path,
                                         tmp_path: Path) -> None:
    instances = rows(50)
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"instance": i, "label": 0.0}) + "\n" for i in instances))
    assert eval_main(["--model", str(bundle_dir), "--data", str(data), "--format", "jsonl",
                      "--scores", str(tmp_path / "scores.txt")]) == 0
    expected = np.loadtxt(tmp_path / "scores.txt")

    response = client.post("/predict", json={"instances": instances})
    assert response.status_code == 200
    served = [p["score"] for p in response.json()["predictions"]]
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-6)


def test_scores_equal_bundle_run_one_request_at_a_time(client: TestClient, bundle_dir: Path) -> None:
    bundle = Bundle.load(bundle_dir)
    instances = rows(5)
    encoded = bundle.features.encode(instances)
    expected = bundle.run(encoded.indices, encoded.weights).score
    served = [client.post("/predict", json={"instances": [i]}).json()["predictions"][0]["score"]
              for i in instances]
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-6)


def test_response_names_the_model_and_matches_its_schema(client: TestClient) -> None:
    body = client.post("/predict", json={"instances": [INSTANCE], "explain": True}).json()
    parsed = PredictResponse.model_validate(body)
    assert (parsed.model.name, parsed.model.version) == ("synthetic-afm", "1")
    prediction = parsed.predictions[0]
    assert prediction.prediction is not None and prediction.probability is None
    assert prediction.explanation is not None


@pytest.mark.parametrize("count", [3, 40])  # the row-by-row and the whole-batch paths
def test_explanation_decomposes_the_score_exactly(client: TestClient, count: int) -> None:
    instances = rows(count)
    body = client.post("/predict", json={"instances": instances, "explain": True}).json()
    for instance, prediction in zip(instances, body["predictions"], strict=True):
        explanation = prediction["explanation"]
        pairs = explanation["pairs"]
        assert len(pairs["fields"]) == 15 and explanation["pairs_omitted"] == 0
        assert sum(pairs["attention"]) == pytest.approx(1.0, abs=1e-5)
        assert sum(pairs["contributions"]) == pytest.approx(explanation["interaction"], abs=1e-6)
        sizes = [abs(c) for c in pairs["contributions"]]
        assert sizes == sorted(sizes, reverse=True)
        for (a, b), values in zip(pairs["fields"], pairs["values"], strict=True):
            assert values == [instance[a], instance[b]]
        linear = sum(explanation["linear"]["weights"])
        assert explanation["logit_shift"] == 0.0 and explanation["calibration"] in ("none", None)
        total = explanation["bias"] + linear + explanation["interaction"]
        assert total == pytest.approx(prediction["score"], abs=1e-5)


def test_pairs_are_ordered_by_absolute_contribution_and_cut_by_top_k(client: TestClient) -> None:
    full = client.post("/predict", json={"instances": [INSTANCE], "explain": True}).json()
    top = client.post("/predict", json={"instances": [INSTANCE], "explain": {"top_k": 3}}).json()
    pairs = full["predictions"][0]["explanation"]["pairs"]
    sizes = [abs(c) for c in pairs["contributions"]]
    assert sizes == sorted(sizes, reverse=True)
    explanation = top["predictions"][0]["explanation"]
    assert explanation["pairs"] == {key: column[:3] for key, column in pairs.items()}
    assert explanation["pairs_omitted"] == 12
    assert explanation["interaction"] == full["predictions"][0]["explanation"]["interaction"]
    for (a, b), values in zip(pairs["fields"], pairs["values"], strict=True):
        assert values == [INSTANCE[a], INSTANCE[b]]


def test_no_explanation_unless_asked(client: TestClient) -> None:
    body = client.post("/predict", json={"instances": [INSTANCE]}).json()
    assert "explanation" not in body["predictions"][0]


def test_missing_fields_and_unknown_values(client: TestClient) -> None:
    instance = {"f0": "v1", "f1": "never-seen", "f2": None}
    body = client.post("/predict", json={"instances": [instance], "explain": True}).json()
    prediction = body["predictions"][0]
    assert prediction["oov"] == [{"field": "f1", "value": "never-seen"}]
    explanation = prediction["explanation"]
    assert explanation["pairs"]["fields"] == [["f0", "f1"]]
    assert explanation["pairs"]["attention"] == [pytest.approx(1.0)]
    assert explanation["pairs"]["values"] == [["v1", "<oov>"]]
    assert explanation["linear"]["fields"] == ["f0", "f1"]


def test_binary_model_gives_probabilities_over_every_field_kind(mixed_client: TestClient,
                                                                 mixed_dir: Path) -> None:
    instance = {"user": "u3", "tags": ["a", "c", "zz"], "price": 72.5, "age": 44}
    body = mixed_client.post("/predict", json={"instances": [instance], "explain": True}).json()
    prediction = PredictResponse.model_validate(body).predictions[0]
    bundle = Bundle.load(mixed_dir)
    encoded = bundle.features.encode([instance])
    served = bundle.run(encoded.indices, encoded.weights)
    # the graph's calibrated probability: the manifest's map of the score
    assert prediction.probability == pytest.approx(float(served.prediction[0]), abs=1e-6)
    calibrated = bundle.manifest.calibration.probability(np.array([prediction.score]))[0]
    assert prediction.probability == pytest.approx(calibrated, abs=1e-6)
    assert prediction.prediction is None
    assert [(o.field, o.value) for o in prediction.oov] == [("tags", "zz")]
    assert prediction.explanation is not None
    linear = prediction.explanation.linear
    shown = dict(zip(linear.fields, linear.values, strict=True))
    assert shown == {"user": "u3", "tags": ["a", "c", "<oov>"], "price": "72.5", "age": "[35,56)"}
    assert prediction.score == pytest.approx(float(served.score[0]), abs=1e-6)


def test_explain_one_instance_from_query_parameters(mixed_client: TestClient) -> None:
    response = mixed_client.get("/explain?user=u3&tags=a&tags=c&price=72.5&age=44")
    assert response.status_code == 200
    explained = ExplainResponse.model_validate(response.json())
    posted = mixed_client.post("/predict", json={
        "instances": [{"user": "u3", "tags": ["a", "c"], "price": 72.5, "age": 44}],
        "explain": True,
    }).json()["predictions"][0]
    assert explained.score == posted["score"]
    assert explained.explanation is not None
    assert len(explained.explanation.pairs.fields) == 6
    assert sum(explained.explanation.pairs.attention) == pytest.approx(1.0, abs=1e-5)


def test_explain_without_parameters_gives_global_importance(client: TestClient,
                                                            bundle_dir: Path) -> None:
    body = ImportanceResponse.model_validate(client.get("/explain").json())
    manifest = Bundle.load(bundle_dir).manifest
    assert len(body.importance) == len(manifest.importance) == 15
    sizes = [p.mean_abs_contribution for p in body.importance]
    assert sizes == sorted(sizes, reverse=True)


def test_an_instance_with_no_field_is_flagged(client: TestClient, mixed_client: TestClient) -> None:
    body = {"instances": [INSTANCE, {}, {"f0": None, "f1": None}, {"f0": "unseen"}]}
    predictions = client.post("/predict", json=body).json()["predictions"]
    assert ["warning" in p for p in predictions] == [False, True, True, False]
    assert predictions[1]["warning"].startswith("no field present")
    assert predictions[1]["score"] == predictions[2]["score"]
    PredictResponse.model_validate(client.post("/predict", json={"instances": [{}]}).json())
    assert "warning" in mixed_client.post("/predict", json={"instances": [{"tags": []}]}).json()[
        "predictions"][0]


def test_instances_with_no_field_are_flagged_alike_in_small_and_large_batches(
    client: TestClient,
) -> None:
    instances: list[dict[str, Any]] = [INSTANCE, {}, {"f0": None, "f1": None}, {"f0": "unseen"},
                                       {}, INSTANCE]

    def flags(chunk: list[dict[str, Any]]) -> list[bool]:
        answer = client.post("/predict", json={"instances": chunk}).json()
        return ["warning" in p for p in answer["predictions"]]

    assert flags(instances) == flags(instances[:3]) + flags(instances[3:]) == [
        False, True, True, False, True, False]
