"""The impression log in one process: every route that scores logs what it answered (the
exact values and scores, under the request id and the version that scored), within the
roll interval; sampling by request id; a full queue drops and counts, never fails or
waits; a failing disk drops and counts; a reload rolls the file; a graceful stop leaves
only complete files; and with the log off, pyarrow is never imported."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from model import impressions as im
from model.bundle import Bundle
from model.impression_columns import FeatureColumns
from service.app import create_app
from service.grpc.proto import grpc_predict_v2_pb2 as pb
from service.grpc.proto.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from service.ops.impression_files import LogFiles
from tests.helpers import INSTANCE, TOKEN, SettingsFactory
from tests.helpers.servers import count, server_env
from tests.service.test_binary import HEADER, binary_inputs, binary_request, split_response

ROLL_S = 0.5
MIXED = [{"user": "u3", "tags": ["a", "b"], "price": 42.5, "age": 30},
         {"user": "nobody", "tags": "c", "age": 70, "price": 7}, {}]


def log_rows(directory: Path) -> dict[str, dict[str, Any]]:
    """Every impression a reader sees (closed files only), by impression id."""
    rows: dict[str, dict[str, Any]] = {}
    for path in im.part_files(directory):
        for row in pq.read_table(path).to_pylist():
            row["file"] = path
            rows[row[im.IMPRESSION_ID]] = row
    return rows


def wait_logged(directory: Path, ids: list[str], timeout_s: float = ROLL_S + 5) -> dict[str, Any]:
    """Until every id is in a closed file (the roll interval and the writer's drain)."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = log_rows(directory)
        if all(i in rows for i in ids):
            return rows
        assert time.monotonic() < deadline, f"not logged within {timeout_s} s: " \
            f"{sorted(set(ids) - set(rows))[:5]}"
        time.sleep(0.05)


def metric(client: TestClient, name: str, labels: dict[str, str] | None = None) -> float:
    return count(client.get("/metrics").text, name, labels or {})


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "impressions"


@pytest.fixture
def logged(make_settings: SettingsFactory, mixed_dir: Path, log_dir: Path) -> Iterator[TestClient]:
    settings = make_settings(model_dir=mixed_dir, impression_log_dir=log_dir,
                             impression_roll_seconds=ROLL_S, grpc_port=0)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        yield client


def check_row(row: dict[str, Any], request_id: str, route: str, score: float,
              probability: float, version: str = "1") -> None:
    """The row's ids and model, and the score and probability the response carried (the
    Open Inference Protocol's FP32 outputs: as float32, the precision the wire gives)."""
    assert (row[im.REQUEST_ID], row[im.ROUTE], row[im.MODEL_VERSION]) == (request_id, route, version)
    assert np.float32(row[im.SCORE]) == np.float32(score)
    assert np.float32(row[im.PREDICTION]) == np.float32(probability)
    if route in ("predict", "explain"):  # JSON numbers of the float32 values, exactly
        assert (row[im.SCORE], row[im.PREDICTION]) == (score, probability)
    assert row[im.MODEL_NAME] == "mixed-afm" and len(row[im.MODEL_SHA256]) == 64


def test_predict_and_explain_log_what_they_answered(logged: TestClient, log_dir: Path,
                                                    mixed_dir: Path) -> None:
    fields = Bundle.load(mixed_dir).manifest.fields
    response = logged.post("/predict", json={"instances": MIXED}, headers={"X-Request-ID": "r-1"})
    predictions = response.json()["predictions"]
    assert [p["impression_id"] for p in predictions] == ["r-1-0", "r-1-1", "r-1-2"]
    explained = logged.get("/explain", params={"user": "u3", "tags": ["a", "b"], "price": "42.5"})
    rid = explained.headers["x-request-id"]
    assert explained.json()["impression_id"] == f"{rid}-0"
    rows = wait_logged(log_dir, ["r-1-0", "r-1-1", "r-1-2", f"{rid}-0"])
    for position, (instance, prediction) in enumerate(zip(MIXED, predictions, strict=True)):
        row = rows[f"r-1-{position}"]
        check_row(row, "r-1", "predict", prediction["score"], prediction["probability"])
        assert row[im.POSITION] == position
        assert row[im.FEATURES] == im.feature_values(fields, instance)
        assert row[im.OOV] == sorted({o["field"] for o in prediction["oov"]},
                                     key=[f.name for f in fields].index)
    assert "user" in rows["r-1-1"][im.OOV]
    row = rows[f"{rid}-0"]
    check_row(row, rid, "explain", explained.json()["score"], explained.json()["probability"])
    assert row[im.FEATURES] == {"user": "u3", "tags": ["a", "b"], "price": 42.5, "age": None}
    assert metric(logged, "afm_impressions_logged_total") == 4
    assert metric(logged, "afm_impression_files_total") >= 1


def test_infer_json_binary_and_grpc_log_their_tensors_as_values(logged: TestClient, log_dir: Path,
                                                                mixed_dir: Path) -> None:
    bundle = Bundle.load(mixed_dir)
    encoded = bundle.features.encode(MIXED)
    expected, oov = FeatureColumns(bundle.features).of_tensors(encoded.indices, encoded.weights)
    inputs = logged.post("/encode", json={"instances": MIXED}).json()
    url = "/v2/models/mixed-afm/infer"
    plain = logged.post(url, json={"inputs": inputs["inputs"]})
    body, headers = binary_request(*_binary(encoded.indices, encoded.weights))
    binary = logged.post(url, content=body, headers={**headers, "X-Request-ID": "bin"})
    header, outputs = split_response(binary.content, int(binary.headers[HEADER]))
    port = logged.app.state.server.grpc.port  # type: ignore[attr-defined]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = GRPCInferenceServiceStub(channel).ModelInfer(
            _grpc_request(encoded.indices, encoded.weights), metadata=[("x-request-id", "g-7")])
    plain_outputs = {output["name"]: output["data"] for output in plain.json()["outputs"]}
    grpc_outputs = {output.name: list(output.contents.fp32_contents) for output in reply.outputs}
    answers = {  # the scores and the predictions each response carried
        (plain.headers["x-request-id"], "infer"): (plain_outputs["score"],
                                                   plain_outputs["prediction"]),
        ("bin", "infer"): (outputs["score"].tolist(), outputs["prediction"].tolist()),
        ("g-7", "grpc"): (grpc_outputs["score"], grpc_outputs["prediction"]),
    }
    assert plain.json()["parameters"] == {"request_id": plain.headers["x-request-id"]}
    assert header["parameters"] == {"request_id": "bin"}
    assert reply.parameters["request_id"].string_param == "g-7"
    ids = [f"{rid}-{i}" for rid, _ in answers for i in range(len(MIXED))]
    rows = wait_logged(log_dir, ids)
    for (rid, route), (scores, predictions) in answers.items():
        for position, (score, prediction) in enumerate(zip(scores, predictions, strict=True)):
            row = rows[f"{rid}-{position}"]
            check_row(row, rid, route, score, prediction)
            assert row[im.FEATURES] == expected[position].as_py() and row[im.OOV] == oov[position]
    assert rows["bin-0"][im.FEATURES]["user"] == "u3" and "user" in rows["bin-1"][im.OOV]


def _binary(indices: np.ndarray, weights: np.ndarray) -> tuple[dict[str, Any], bytes, bytes]:
    header, raw_i, raw_w = binary_inputs(indices, weights)
    return {**header, "parameters": {"binary_data_output": True}}, raw_i, raw_w


def _grpc_request(indices: np.ndarray, weights: np.ndarray) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor
    output = pb.ModelInferRequest.InferRequestedOutputTensor
    request = pb.ModelInferRequest(model_name="mixed-afm", outputs=[
        output(name="score"), output(name="prediction")])
    request.inputs.extend([tensor(name="indices", datatype="INT64", shape=indices.shape),
                           tensor(name="weights", datatype="FP32", shape=weights.shape)])
    request.inputs[0].contents.int64_contents.extend(indices.ravel().tolist())
    request.inputs[1].contents.fp32_contents.extend(weights.ravel().tolist())
    return request


def test_without_the_log_responses_carry_no_impression_id(client: TestClient) -> None:
    body = client.post("/predict", json={"instances": [INSTANCE]}).json()
    assert "impression_id" not in body["predictions"][0]
    assert "parameters" not in client.post("/v2/models/synthetic-afm/infer", json={
        "inputs": client.post("/encode", json={"instances": [INSTANCE]}).json()["inputs"]}).json()


def test_requests_are_sampled_whole_by_their_id(make_settings: SettingsFactory, log_dir: Path) -> None:
    settings = make_settings(impression_log_dir=log_dir, impression_sample=0.5)
    sent = {f"req-{n}": 2 for n in range(40)}
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        answered = {}
        for rid, n in [*sent.items(), ("req-0", 2)]:  # an id sent twice gets the same answer
            predictions = client.post("/predict", json={"instances": [INSTANCE] * n},
                                      headers={"X-Request-ID": rid}).json()["predictions"]
            answered[rid] = [p.get("impression_id") for p in predictions]
    chosen = {rid for rid in sent if zlib.crc32(rid.encode()) < 0.5 * 2**32}
    assert 8 < len(chosen) < 32
    assert {rid for rid, ids in answered.items() if ids[0] is not None} == chosen
    assert all(ids in ([f"{rid}-0", f"{rid}-1"], [None, None]) for rid, ids in answered.items())
    assert set(log_rows(log_dir)) == {f"{rid}-{i}" for rid in chosen for i in range(2)}


def test_a_full_queue_drops_and_counts_and_never_waits(make_settings: SettingsFactory,
                                                       log_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer is stuck: three instances fill the queue; later requests are answered at
    once, unlogged and counted; once the writer goes on, the three are written."""
    stuck = threading.Event()
    write = LogFiles.write

    def slow_write(self: LogFiles, *args: Any) -> None:
        stuck.wait(30)
        write(self, *args)

    monkeypatch.setattr(LogFiles, "write", slow_write)
    settings = make_settings(impression_log_dir=log_dir, impression_queue_instances=3)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        answers = []
        for n in range(6):
            start = time.monotonic()
            response = client.post("/predict", json={"instances": [INSTANCE]},
                                   headers={"X-Request-ID": f"q{n}"})
            answers.append((response.status_code, response.json()["predictions"][0].get(
                "impression_id"), time.monotonic() - start))
        assert [a[:2] for a in answers] == [(200, "q0-0"), (200, "q1-0"), (200, "q2-0"),
                                             (200, None), (200, None), (200, None)]
        assert max(a[2] for a in answers) < 5
        assert metric(client, "afm_impressions_dropped_total", {"reason": "queue_full"}) == 3
        stuck.set()
    assert sorted(log_rows(log_dir)) == ["q0-0", "q1-0", "q2-0"]


def test_a_failed_write_drops_and_counts_and_the_next_file_is_written(
        make_settings: SettingsFactory, log_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(impression_log_dir=log_dir, impression_roll_seconds=ROLL_S)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        with monkeypatch.context() as patched:
            def full(self: im.PartFile, data: Any) -> None:
                raise OSError(28, "No space left on device")

            patched.setattr(im.PartFile, "write", full)
            response = client.post("/predict", json={"instances": [INSTANCE] * 2},
                                   headers={"X-Request-ID": "lost"})
            assert response.status_code == 200
            deadline = time.monotonic() + ROLL_S + 5
            while metric(client, "afm_impressions_dropped_total", {"reason": "error"}) < 2:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        client.post("/predict", json={"instances": [INSTANCE]}, headers={"X-Request-ID": "kept"})
        rows = wait_logged(log_dir, ["kept-0"])
    assert "lost-0" not in rows
    assert not [p for p in log_dir.rglob("*") if p.is_file() and p.name.startswith(".")]


def test_a_reload_rolls_the_file_and_each_impression_keeps_its_version(
        make_settings: SettingsFactory, models_root: Path, log_dir: Path) -> None:
    settings = make_settings(model_dir=models_root / "v1", models_root=models_root,
                             admin_token=TOKEN, impression_log_dir=log_dir)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        before = client.post("/predict", json={"instances": [INSTANCE]}, headers={"X-Request-ID": "a"})
        reloaded = client.post("/admin/reload", json={"model_dir": "v2"},
                               headers={"Authorization": f"Bearer {TOKEN}"})
        assert reloaded.status_code == 200
        after = client.post("/predict", json={"instances": [INSTANCE]}, headers={"X-Request-ID": "b"})
    assert (before.json()["model"]["version"], after.json()["model"]["version"]) == ("1", "2")
    rows = log_rows(log_dir)
    assert (rows["a-0"][im.MODEL_VERSION], rows["b-0"][im.MODEL_VERSION]) == ("1", "2")
    assert rows["a-0"]["file"] != rows["b-0"]["file"]  # a file holds one version
    for path in im.part_files(log_dir):
        assert len(set(pq.read_table(path, columns=[im.MODEL_VERSION]).column(0).to_pylist())) == 1


def test_a_graceful_stop_writes_everything_and_leaves_only_complete_files(
        make_settings: SettingsFactory, log_dir: Path) -> None:
    settings = make_settings(impression_log_dir=log_dir)  # rolls after 5 minutes: only the stop closes
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        for n in range(50):
            client.post("/predict", json={"instances": [INSTANCE] * 3}, headers={"X-Request-ID": f"s{n}"})
        time.sleep(0.5)
        assert im.part_files(log_dir) == []  # being written: invisible
        assert [p.name for p in log_dir.rglob(".part-*.partial")]
    assert sorted(log_rows(log_dir)) == sorted(f"s{n}-{i}" for n in range(50) for i in range(3))
    assert [p.name for p in log_dir.rglob("*") if p.is_file()] == [im.part_files(log_dir)[0].name]
    assert pq.ParquetFile(im.part_files(log_dir)[0]).schema_arrow.metadata[im.VERSION_KEY] == b"1"


OFF = """
import sys
from prometheus_client import CollectorRegistry
from service.server import Server
from service.ops.settings import Settings
Server(Settings(model_dir=sys.argv[1]), CollectorRegistry())
log = ["model.impressions", "model.impression_columns", "service.ops.impression_rows"]
assert not [name for name in log if name in sys.modules], sys.modules.keys()
assert "pyarrow.parquet" not in sys.modules and "pyarrow.dataset" not in sys.modules
print("no impression log")
"""


def test_with_the_log_off_none_of_it_is_imported(bundle_dir: Path) -> None:
    """The log costs nothing when off: none of its modules, nor pyarrow's Parquet writer.
    (pyarrow itself maps a format-3 bundle's vocabularies: about 6 MiB of heap a worker,
    its library pages shared; docs/BENCHMARKS.md.)"""
    result = subprocess.run([sys.executable, "-c", OFF, str(bundle_dir)], env=server_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "no impression log" in result.stdout


def test_a_log_directory_that_cannot_be_made_is_refused(make_settings: SettingsFactory,
                                                        tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="AFM_IMPRESSION_LOG_DIR=.*cannot be made a directory"):
        make_settings(impression_log_dir=tmp_path / "file" / "log")
    assert json.dumps(make_settings(impression_log_dir="").impression_log_dir) == "null"
