"""The binary tensor data extension of OIP REST: requests built as the extension's
specification describes (a JSON header, then raw little-endian bytes), requests and
responses from tritonclient's own HTTP code, and the same refusals as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from model.bundle import Bundle
from model.manifest import OUTPUT_NAMES
from service.codecs.schemas import InferenceResponse, ServerMetadata
from tests.helpers import INSTANCE
from tests.helpers.servers import serve, server_env

INFER = "/v2/models/synthetic-afm/infer"
HEADER = "Inference-Header-Content-Length"


@pytest.fixture(scope="module")
def encoded(bundle_dir: Path) -> tuple[Bundle, np.ndarray, np.ndarray]:
    bundle = Bundle.load(bundle_dir)
    batch = bundle.features.encode([INSTANCE, {"f0": "v1", "f2": "v2"}, {"f5": "v7"}])
    return bundle, batch.indices, batch.weights


def binary_request(header: dict[str, Any], *chunks: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    return head + b"".join(chunks), {HEADER: str(len(head)),
                                     "Content-Type": "application/octet-stream"}


def binary_inputs(indices: np.ndarray, weights: np.ndarray) -> tuple[dict[str, Any], bytes, bytes]:
    raw_i, raw_w = indices.astype("<i8").tobytes(), weights.astype("<f4").tobytes()
    inputs = [
        {"name": "indices", "shape": list(indices.shape), "datatype": "INT64",
         "parameters": {"binary_data_size": len(raw_i)}},
        {"name": "weights", "shape": list(weights.shape), "datatype": "FP32",
         "parameters": {"binary_data_size": len(raw_w)}},
    ]
    return {"inputs": inputs}, raw_i, raw_w


def split_response(content: bytes, header_length: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A response read as the specification describes: outputs' bytes in order after the JSON."""
    header = json.loads(content[:header_length])
    arrays, offset = {}, header_length
    for output in header["outputs"]:
        size = output["parameters"]["binary_data_size"]
        arrays[output["name"]] = np.frombuffer(content[offset:offset + size], "<f4").reshape(
            output["shape"])
        offset += size
    assert offset == len(content)
    return header, arrays


def test_server_metadata_lists_the_extension(client: TestClient) -> None:
    assert "binary_tensor_data" in ServerMetadata.model_validate(client.get("/v2").json()).extensions


def test_binary_inputs_and_outputs_round_trip(client: TestClient, encoded: Any) -> None:
    bundle, indices, weights = encoded
    expected = bundle.run(indices, weights)
    header, raw_i, raw_w = binary_inputs(indices, weights)
    header["parameters"] = {"binary_data_output": True}
    header["outputs"] = [{"name": "attention"}, {"name": "score", "parameters": {"binary_data": False}}]
    body, headers = binary_request(header, raw_i, raw_w)
    response = client.post(INFER, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers[HEADER])
    assert "id" not in json.loads(response.content[:length])  # none sent: none answered
    head = InferenceResponse.model_validate_json(response.content[:length])
    attention, score = head.outputs
    assert score.name == "score" and score.data is not None and score.parameters is None
    np.testing.assert_allclose(score.data, expected.score, rtol=0, atol=1e-6)
    assert attention.data is None and attention.parameters == {"binary_data_size": 3 * 15 * 4}
    served = np.frombuffer(response.content[length:], "<f4").reshape(attention.shape)
    np.testing.assert_allclose(served, expected.attention, rtol=0, atol=1e-6)


def test_binary_and_json_inputs_mix_and_json_answers_json(client: TestClient, encoded: Any) -> None:
    bundle, indices, weights = encoded
    header, raw_i, _ = binary_inputs(indices, weights)
    header["inputs"][1] = {"name": "weights", "shape": list(weights.shape), "datatype": "FP32",
                           "data": weights.ravel().tolist()}
    body, headers = binary_request(header, raw_i)
    response = client.post(INFER, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json" and HEADER not in response.headers
    outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
    np.testing.assert_allclose(outputs["score"], bundle.run(indices, weights).score, atol=1e-6)


def test_tritonclient_builds_and_reads_what_we_serve(client: TestClient, encoded: Any) -> None:
    """tritonclient.http's own request builder and response parser, unmodified: its
    defaults send binary inputs and ask for binary outputs."""
    http = pytest.importorskip("tritonclient.http")
    bundle, indices, weights = encoded
    expected = bundle.run(indices, weights)
    inputs = [http.InferInput("indices", list(indices.shape), "INT64"),
              http.InferInput("weights", list(weights.shape), "FP32")]
    inputs[0].set_data_from_numpy(indices)
    inputs[1].set_data_from_numpy(weights)
    for outputs in (None, [http.InferRequestedOutput("contributions"),
                           http.InferRequestedOutput("score", binary_data=False)]):
        body, length = http.InferenceServerClient.generate_request_body(
            inputs, outputs=outputs, request_id="7")
        response = client.post(INFER, content=body, headers={HEADER: str(length)})
        assert response.status_code == 200, response.text
        result = http.InferenceServerClient.parse_response_body(
            response.content, header_length=int(response.headers[HEADER]))
        assert result.get_response()["id"] == "7"
        for name in ("score", "contributions") if outputs else OUTPUT_NAMES:
            np.testing.assert_allclose(result.as_numpy(name), getattr(expected, name), atol=1e-6)


def test_spec_example_split_is_read_in_input_order(client: TestClient, encoded: Any) -> None:
    _, indices, weights = encoded
    header, raw_i, raw_w = binary_inputs(indices, weights)
    header["inputs"].reverse()  # bytes follow the order of the inputs, not their names
    body, headers = binary_request(header, raw_w, raw_i)
    response = client.post(INFER, content=body, headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    _, arrays = split_response(*_binary_all(client, header, raw_w, raw_i))
    assert set(arrays) == set(OUTPUT_NAMES)


def _binary_all(client: TestClient, header: dict[str, Any], *chunks: bytes) -> tuple[bytes, int]:
    body, headers = binary_request({**header, "parameters": {"binary_data_output": True}}, *chunks)
    response = client.post(INFER, content=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.content, int(response.headers[HEADER])


def one() -> tuple[dict[str, Any], bytes, bytes]:
    return binary_inputs(np.ones((1, 6, 1), np.int64), np.ones((1, 6, 1), np.float32))


def changed(which: int, **change: Any) -> dict[str, Any]:
    header, _, _ = one()
    header["inputs"][which].update(change)
    return header


GOOD_I, GOOD_W = one()[1], one()[2]


@pytest.mark.parametrize(("header", "chunks", "length", "status", "phrase"), [
    (one()[0], (GOOD_I,), None, 400, "goes past the end"),
    (one()[0], (GOOD_I, GOOD_W, b"x"), None, 400, "1 bytes after the JSON header belong to no"),
    (changed(0, parameters={"binary_data_size": 40}), (GOOD_I[:40], GOOD_W), None, 400,
     "takes 48 bytes, got 40"),
    (changed(0, parameters={"binary_data_size": -1}), (GOOD_I, GOOD_W), None, 400, "byte count"),
    (changed(0, parameters={"binary_data_size": "48"}), (GOOD_I, GOOD_W), None, 400, "byte count"),
    (changed(0, datatype="INT32"), (GOOD_I, GOOD_W), None, 400, "must be INT64"),
    (changed(1, datatype="FP64"), (GOOD_I, GOOD_W), None, 400, "must be FP32"),
    (changed(1, datatype="FP16", parameters={"binary_data_size": 12}), (GOOD_I, GOOD_W[:12]),
     None, 400, "must be FP32"),
    (changed(0, shape=[1, 6, 2], parameters={"binary_data_size": 96}), (GOOD_I * 2, GOOD_W),
     None, 400, "shape [B, 6, 1]"),
    (changed(0, shape=[100000, 6, 1], parameters={"binary_data_size": 48}), (GOOD_I, GOOD_W),
     None, 413, "over the limit"),
    (changed(0, data=[1] * 6), (GOOD_I, GOOD_W), None, 400, "both data and binary_data_size"),
    (changed(0, parameters={}), (GOOD_W,), None, 400, "has no data"),
    (changed(0, name="other"), (GOOD_I, GOOD_W), None, 400, "unknown input 'other'"),
    (one()[0], (np.full(6, -1, "<i8").tobytes(), GOOD_W), None, 400, "indices must lie in"),
    (one()[0], (GOOD_I, np.full(6, np.nan, "<f4").tobytes()), None, 400, "finite"),
    (one()[0], (GOOD_I, GOOD_W), "x", 400, "Inference-Header-Content-Length"),
    (one()[0], (GOOD_I, GOOD_W), "-3", 400, "Inference-Header-Content-Length"),
    (one()[0], (GOOD_I, GOOD_W), "100000", 400, "Inference-Header-Content-Length"),
    (one()[0], (GOOD_I, GOOD_W), "20", 400, "malformed JSON"),
    ({**one()[0], "parameters": {"binary_data_output": "yes"}}, (GOOD_I, GOOD_W), None, 400,
     "true or false"),
    ({**one()[0], "outputs": [{"name": "score", "parameters": {"binary_data": 1}}]},
     (GOOD_I, GOOD_W), None, 400, "true or false"),
])
def test_bad_binary_requests_get_4xx(client: TestClient, header: dict[str, Any],
                                     chunks: tuple[bytes, ...], length: str | None, status: int,
                                     phrase: str) -> None:
    body, headers = binary_request(header, *chunks)
    if length is not None:
        headers[HEADER] = length
    response = client.post(INFER, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert phrase in response.json()["error"]


def test_binary_size_without_the_header_and_other_media_are_refused(client: TestClient) -> None:
    header, raw_i, raw_w = one()
    response = client.post(INFER, json=header)
    assert response.status_code == 400 and "goes past the end" in response.json()["error"]
    body, headers = binary_request(header, raw_i, raw_w)
    response = client.post(INFER, content=body, headers={**headers, "Content-Type": "text/plain"})
    assert response.status_code == 415


def test_binary_body_over_the_body_limit_is_413(client: TestClient) -> None:
    header, raw_i, raw_w = one()
    body, headers = binary_request(header, raw_i, raw_w + b"\0" * (2 << 20))
    response = client.post(INFER, content=body, headers=headers)
    assert response.status_code == 413


@pytest.mark.slow
def test_unmodified_tritonclient_infers_against_afm_serve(tmp_path: Path, bundle_dir: Path,
                                                          encoded: Any) -> None:
    """tritonclient.http's InferenceServerClient as a Triton user runs it, over a socket."""
    http = pytest.importorskip("tritonclient.http")
    bundle, indices, weights = encoded
    args = ["--model-dir", str(bundle_dir)]
    with serve(args, server_env(), tmp_path / "serve.log") as (url, _):
        triton = http.InferenceServerClient(url.removeprefix("http://"))
        try:
            assert triton.is_server_live() and triton.is_model_ready("synthetic-afm")
            assert "binary_tensor_data" in triton.get_server_metadata()["extensions"]
            inputs = [http.InferInput("indices", list(indices.shape), "INT64"),
                      http.InferInput("weights", list(weights.shape), "FP32")]
            inputs[0].set_data_from_numpy(indices)
            inputs[1].set_data_from_numpy(weights)
            result = triton.infer("synthetic-afm", inputs, model_version="1")
            expected = bundle.run(indices, weights)
            for name in OUTPUT_NAMES:
                np.testing.assert_allclose(result.as_numpy(name), getattr(expected, name), atol=1e-6)
            inputs[0].set_data_from_numpy(np.full_like(indices, -1))
            with pytest.raises(Exception, match="indices must lie in"):
                triton.infer("synthetic-afm", inputs)
        finally:
            triton.close()
