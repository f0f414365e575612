"""App-wide behaviour: request ids, request logs, unexpected failures, CORS, health, OpenAPI."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from model.manifest import Manifest
from service.app import create_app
from service.ops.logs import ACCESS_LOGGER, FLUSH_S
from tests.helpers import INSTANCE, TOKEN, SettingsFactory


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    given = client.get("/metadata", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    fresh = client.get("/metadata")
    assert len(fresh.headers["x-request-id"]) == 32
    for unsafe in ("has space", "x" * 200, "quote\"d"):
        response = client.get("/metadata", headers={"X-Request-ID": unsafe})
        assert response.headers["x-request-id"] != unsafe
    error = client.post("/predict", json={"instances": [{"zz": 1}]}, headers={"X-Request-ID": "r1"})
    assert error.headers["x-request-id"] == "r1"


def access_lines(text: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if line["logger"] == ACCESS_LOGGER]


def test_one_structured_log_line_per_request_not_for_probes(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    client.post("/predict", json={"instances": [INSTANCE]}, headers={"X-Request-ID": "r-42"})
    for probe in ("/healthz", "/readyz", "/metrics", "/v2/health/live"):
        client.get(probe)
    client.app.state.access_log.flush()  # type: ignore[attr-defined]
    [line] = access_lines(capsys.readouterr().err)
    assert line["request_id"] == "r-42"
    assert (line["method"], line["route"], line["status"]) == ("POST", "/predict", 200)
    assert line["duration_ms"] > 0 and line["level"] == "info"


def test_request_lines_are_written_within_the_flush_interval_and_at_shutdown(
    make_settings: SettingsFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    with TestClient(create_app(make_settings(), registry=CollectorRegistry())) as client:
        capsys.readouterr()
        client.get("/ping")
        time.sleep(FLUSH_S * 3)
        assert len(access_lines(capsys.readouterr().err)) == 1
        client.get("/ping")
    assert len(access_lines(capsys.readouterr().err)) == 1  # the stop wrote it


def test_request_lines_can_be_turned_off(make_settings: SettingsFactory,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    for settings in (make_settings(access_log=False), make_settings(log_level="warning")):
        with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
            client.get("/ping")
        assert not access_lines(capsys.readouterr().err)


def test_unexpected_failure_is_a_500_without_internals_logged_with_its_id(
    client: TestClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret detail in /srv/models/x.onnx")

    monkeypatch.setattr(client.app.state.runtime, "predict", explode)  # type: ignore[attr-defined]
    with caplog.at_level(logging.ERROR):
        response = client.post("/predict", json={"instances": [INSTANCE]},
                               headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.json() == {"error": "internal error (request id boom-1)"}
    assert response.headers["x-request-id"] == "boom-1"
    logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert logged and logged[0].request == {"request_id": "boom-1"}  # type: ignore[attr-defined]
    assert "secret detail" in (caplog.text)
    assert 'status="500"' in client.get("/metrics").text


def test_cors_is_off_unless_configured(client: TestClient, make_settings: SettingsFactory) -> None:
    origin = {"Origin": "https://app.example"}
    assert "access-control-allow-origin" not in client.get("/metadata", headers=origin).headers
    settings = make_settings(cors_origins="https://app.example")
    with TestClient(create_app(settings, registry=CollectorRegistry())) as cors:
        response = cors.get("/metadata", headers=origin)
    assert response.headers["access-control-allow-origin"] == "https://app.example"


def test_health_readiness_and_metadata(client: TestClient, bundle_dir: Path) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/ping").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {
        "ready": True, "model": {"name": "synthetic-afm", "version": "1"}}
    meta = client.get("/metadata").json()
    assert meta["sha256"] == Manifest.parse(bundle_dir).digest and meta["task"] == "regression"
    assert meta["fields"][0] == {"name": "f0", "kind": "categorical", "vocabulary_size": 30,
                                 "max_entries": 1}
    assert meta["metrics"] == Manifest.parse(bundle_dir).metrics and len(meta["pairs"]) == 15


def test_not_ready_outside_the_lifespan(make_settings: SettingsFactory) -> None:
    client = TestClient(create_app(make_settings(), registry=CollectorRegistry()))
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 503 and "not loaded" in response.json()["error"]
    assert client.get("/v2/health/ready").status_code == 503
    assert client.post("/predict", json={"instances": [INSTANCE]}).status_code == 503


def test_openapi_documents_every_route_with_examples(make_settings: SettingsFactory) -> None:
    app = create_app(make_settings(admin_token=TOKEN), registry=CollectorRegistry())
    schema = TestClient(app).get("/openapi.json").json()
    paths = schema["paths"]
    for path in ("/predict", "/explain", "/healthz", "/readyz", "/metrics", "/metadata",
                 "/admin/reload", "/v2", "/v2/health/live", "/v2/health/ready",
                 "/v2/models/{name}", "/v2/models/{name}/ready", "/v2/models/{name}/infer",
                 "/v2/models/{name}/versions/{model_version}/infer"):
        assert path in paths, path
        for operation in paths[path].values():
            assert "200" in operation["responses"], path
    components = schema["components"]["schemas"]
    for name in ("PredictRequest", "InferenceRequest", "PredictResponse", "ImportanceResponse",
                 "ExplainResponse", "ModelMetadata", "InferenceResponse", "OIPModelMetadata",
                 "ReloadRequest", "ReloadResponse", "ErrorBody"):
        assert components[name].get("examples"), name
    body = paths["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/PredictRequest"}
    assert "ExplainOptions" in components


def test_every_schema_example_is_valid_for_its_model() -> None:
    from pydantic import BaseModel

    from service.codecs import schemas

    models = [m for m in vars(schemas).values()
              if isinstance(m, type) and issubclass(m, BaseModel) and m is not BaseModel]
    checked = 0
    for model in models:
        extra = model.model_config.get("json_schema_extra")
        found = extra.get("examples", []) if isinstance(extra, dict) else []
        for example in found if isinstance(found, list) else []:
            model.model_validate(example)
            checked += 1
    assert checked >= 12


def test_the_start_up_log_line_names_the_model_and_its_threads(
    make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    for threads, said in ((1, "synthetic-afm version 1 (onnxruntime: 1 thread)"),
                          (2, "(onnxruntime: 2 threads)")):
        caplog.clear()
        app = create_app(make_settings(ort_threads=threads), registry=CollectorRegistry())
        with caplog.at_level(logging.INFO, logger="service.runtime"), TestClient(app):
            pass
        assert any(said in record.getMessage() for record in caplog.records), threads
