"""KServe's V1 protocol: the requests its own clients send (kserve's InferenceRESTClient
posts `orjson.dumps(data)` with no Content-Type to `/v1/models/<name>:predict` and
`:explain`, reads `ready` from `GET /v1/models/<name>` and `status` from `GET /`), the V1
shapes back, and `/predict`'s checks, limits, errors and metrics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from service.app import create_app
from service.codecs.schemas import V1ExplainResponse, V1PredictResponse
from tests.helpers import INSTANCE, SettingsFactory
from tests.service.test_response_shapes import Seen, check_shape

PREDICT, EXPLAIN = "/v1/models/synthetic-afm:predict", "/v1/models/synthetic-afm:explain"
ROWS = [INSTANCE, {"f0": "v1", "f1": "never-seen"}, {}]


def kserve_post(client: TestClient, url: str, data: dict[str, Any]) -> Any:
    """What kserve's InferenceRESTClient.infer and .explain send (protocol "v1")."""
    return client.post(url, content=orjson.dumps(data))


def test_kserve_clients_find_the_server_live_and_the_model_ready(client: TestClient) -> None:
    assert client.get("/").json()["status"].lower() == "alive"
    assert client.get("/v1/models").json() == {"models": ["synthetic-afm"]}
    assert client.get("/v1/models/synthetic-afm").json() == {"name": "synthetic-afm", "ready": True}
    assert client.get("/v1/models/other").status_code == 404


def test_predict_answers_each_instance_as_predict_does(client: TestClient) -> None:
    response = kserve_post(client, PREDICT, {"instances": ROWS})
    assert response.status_code == 200
    check_shape(response.json(), V1PredictResponse, Seen(set))
    expected = client.post("/predict", json={"instances": ROWS}).json()["predictions"]
    assert response.json()["predictions"] == [p["prediction"] for p in expected]


def test_a_binary_model_predicts_probabilities(make_settings: SettingsFactory,
                                               mixed_dir: Path) -> None:
    rows = [{"user": "u1", "tags": ["a"], "price": 55.0, "age": 30}]
    with TestClient(create_app(make_settings(model_dir=mixed_dir), CollectorRegistry())) as c:
        name = c.get("/v1/models").json()["models"][0]
        predictions = kserve_post(c, f"/v1/models/{name}:predict", {"instances": rows}).json()
        expected = c.post("/predict", json={"instances": rows}).json()["predictions"]
    assert predictions == {"predictions": [expected[0]["probability"]]}


@pytest.mark.parametrize("body", [
    {"inputs": ROWS},
    {"inputs": {name: [row.get(name) for row in ROWS] for name in ("f0", "f1", "f2", "f3", "f4", "f5")}},
], ids=["inputs as rows", "inputs in columns"])
def test_inputs_are_the_instances_in_either_form(client: TestClient, body: dict[str, Any]) -> None:
    expected = kserve_post(client, PREDICT, {"instances": ROWS}).json()
    assert kserve_post(client, PREDICT, body).json() == expected


def test_explain_decomposes_every_score_exactly(client: TestClient) -> None:
    response = kserve_post(client, EXPLAIN, {"instances": ROWS})
    assert response.status_code == 200
    body = response.json()
    seen = Seen(set)
    check_shape(body, V1ExplainResponse, seen)
    assert body["predictions"] == kserve_post(client, PREDICT, {"instances": ROWS}).json()["predictions"]
    for explanation in body["explanations"][:2]:  # the empty instance has no pair
        total = (explanation["bias"] + explanation["logit_shift"] + sum(explanation["linear"]["weights"])
                 + sum(explanation["pairs"]["contributions"]))
        assert total == pytest.approx(explanation["score"], abs=1e-6)
        assert explanation["interaction"] == pytest.approx(sum(explanation["pairs"]["contributions"]),
                                                           abs=1e-6)
        assert explanation["pairs_omitted"] == 0
    assert len(body["explanations"][0]["pairs"]["fields"]) == 15  # every pair of 6 fields
    assert body["explanations"][1]["oov"] == [{"field": "f1", "value": "never-seen"}]
    empty = body["explanations"][2]
    assert empty["score"] == pytest.approx(empty["bias"] + empty["logit_shift"], abs=1e-6)


def test_explain_of_a_downsampled_model_adds_its_logit_shift(make_settings: SettingsFactory,
                                                             downsampled_binary: Path) -> None:
    rows = [{"user": "3", "item": "27", "context": "41"}, {"user": "12", "item": "20"}, {}]
    settings = make_settings(model_dir=downsampled_binary)
    with TestClient(create_app(settings, CollectorRegistry())) as c:
        body = kserve_post(c, "/v1/models/downsampled:explain", {"instances": rows}).json()
        expected = c.post("/predict", json={"instances": rows}).json()["predictions"]
    assert body["predictions"] == [p["probability"] for p in expected]  # calibrated
    for explanation, served in zip(body["explanations"], expected, strict=True):
        assert explanation["logit_shift"] == pytest.approx(math.log(0.2))
        assert explanation["calibration"] == "platt"
        total = (explanation["bias"] + explanation["logit_shift"]
                 + sum(explanation["linear"]["weights"]) + sum(explanation["pairs"]["contributions"]))
        assert total == pytest.approx(explanation["score"], abs=1e-6)
        assert explanation["score"] == served["score"]


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"instances": ROWS, "inputs": ROWS}, 400, "exactly one of instances and inputs"),
    ({}, 400, "exactly one of instances and inputs"),
    ({"instances": []}, 400, "instances"),
    ({"inputs": {"f0": ["v1", "v2"], "f1": ["v1"]}}, 400, "same number of values"),
    ({"instances": [{"zz": "v1"}]}, 400, "unknown field 'zz'"),
    ({"instances": [INSTANCE] * 1025}, 413, "at most 1024 instances"),
    ({"instances": [INSTANCE], "signature_name": "x"}, 400, "signature_name"),
])
@pytest.mark.parametrize("url", [PREDICT, EXPLAIN])
def test_bad_bodies_get_the_errors_predict_gives(client: TestClient, url: str,
                                                 body: dict[str, Any], status: int, says: str) -> None:
    response = kserve_post(client, url, body)
    assert response.status_code == status and says in response.json()["error"], response.text


def test_another_models_name_and_other_media_are_refused(client: TestClient) -> None:
    assert kserve_post(client, "/v1/models/other:predict", {"instances": ROWS}).status_code == 404
    assert kserve_post(client, "/v1/models/other:explain", {"instances": ROWS}).status_code == 404
    form = client.post(PREDICT, content=b"instances=1",
                       headers={"content-type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415
    assert client.post(PREDICT, content=b"{nope").status_code == 400
    assert client.get(PREDICT).status_code == 404  # a GET names a model: "synthetic-afm:predict"


def test_v1_requests_are_counted_by_their_route(client: TestClient) -> None:
    kserve_post(client, PREDICT, {"instances": ROWS})
    kserve_post(client, EXPLAIN, {"instances": [{"zz": 1}]})
    text = client.get("/metrics").text
    assert 'afm_requests_total{method="POST",route="/v1/models/{name}:predict",status="200"} 1.0' in text
    assert 'afm_requests_total{method="POST",route="/v1/models/{name}:explain",status="400"} 1.0' in text


def test_the_openapi_document_describes_the_v1_routes(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    paths = document["paths"]
    for path in ("/v1/models/{name}:predict", "/v1/models/{name}:explain"):
        operation = paths[path]["post"]
        assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/V1Request")
        assert {"200", "400", "404", "413"} <= set(operation["responses"])
    assert "V1ExplainResponse" in document["components"]["schemas"]
    assert paths["/v1/models/{name}"]["get"]["responses"]["200"]
