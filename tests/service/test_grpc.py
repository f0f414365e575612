"""Open Inference Protocol gRPC: round trips with the generated stubs (health, metadata,
infer with typed and raw contents), every bad input's status code, the metrics, a reload
under gRPC load, and wire compatibility with Triton's own client (in a subprocess:
tritonclient.grpc registers the same `inference.*` protobuf names as our stubs)."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeAlias

import grpc
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from bench.harness import free_port
from model.bundle import Bundle
from model.manifest import OUTPUT_NAMES
from service import cli
from service.app import create_app
from service.grpc.proto import grpc_predict_v2_pb2 as pb
from service.grpc.proto.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from service.server import Server
from tests.helpers import INSTANCE, TOKEN, SettingsFactory
from tests.helpers.servers import count, serve, server_env

PROTO = Path(__file__).resolve().parents[2] / "service/grpc/proto/grpc_predict_v2.proto"
Code: TypeAlias = grpc.StatusCode


@pytest.fixture(scope="module")
def encoded(bundle_dir: Path) -> tuple[Bundle, np.ndarray, np.ndarray]:
    bundle = Bundle.load(bundle_dir)
    batch = bundle.features.encode([INSTANCE, {"f0": "v1", "f2": "v2"}, {"f5": "v7"}])
    return bundle, batch.indices, batch.weights


@pytest.fixture
def served(make_settings: SettingsFactory) -> Iterator[tuple[TestClient, Any, grpc.Channel]]:
    settings = make_settings(grpc_port=0, max_instances=64, grpc_max_message_bytes=64 << 10)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        with grpc.insecure_channel(f"127.0.0.1:{client.app.state.server.grpc.port}") as channel:  # type: ignore[attr-defined]
            yield client, GRPCInferenceServiceStub(channel), channel


def test_grpc_serves_without_http(make_settings: SettingsFactory, encoded: Any,
                                  caplog: pytest.LogCaptureFixture) -> None:
    """The gRPC transport on a server of its own: no FastAPI app, no lifespan; its start-up
    log line names the port."""
    bundle, indices, weights = encoded
    server = Server(make_settings(grpc_port=0), CollectorRegistry())
    assert server.grpc is not None

    async def scenario() -> pb.ModelInferResponse:
        serving = asyncio.create_task(server.serve_grpc())
        for _ in range(600):
            if server.runtime.ready and server.grpc is not None and server.grpc.server:
                break
            await asyncio.sleep(0.05)
        assert server.grpc is not None
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc.port}") as channel:
            reply = await GRPCInferenceServiceStub(channel).ModelInfer(raw_request(indices, weights))
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
        return reply

    with caplog.at_level(logging.INFO, logger="service.grpc"):
        reply = asyncio.run(scenario())
    np.testing.assert_allclose(outputs_of(reply)["score"], bundle.run(indices, weights).score,
                               atol=1e-6)
    assert server.grpc.server is None and not server.runtime.ready  # stopped when cancelled
    assert any(f"port {server.grpc.port}" in record.getMessage() for record in caplog.records)


def typed_request(indices: np.ndarray, weights: np.ndarray, **fields: Any) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor
    return pb.ModelInferRequest(model_name="synthetic-afm", inputs=[
        tensor(name="indices", datatype="INT64", shape=indices.shape,
               contents=pb.InferTensorContents(int64_contents=indices.ravel().tolist())),
        tensor(name="weights", datatype="FP32", shape=weights.shape,
               contents=pb.InferTensorContents(fp32_contents=weights.ravel().tolist())),
    ], **fields)


def raw_request(indices: np.ndarray, weights: np.ndarray, **fields: Any) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor
    return pb.ModelInferRequest(
        model_name="synthetic-afm",
        inputs=[tensor(name="indices", datatype="INT64", shape=indices.shape),
                tensor(name="weights", datatype="FP32", shape=weights.shape)],
        raw_input_contents=[indices.astype("<i8").tobytes(), weights.astype("<f4").tobytes()],
        **fields)


def outputs_of(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    if response.raw_output_contents:
        return {o.name: np.frombuffer(raw, "<f4").reshape(o.shape)
                for o, raw in zip(response.outputs, response.raw_output_contents, strict=True)}
    return {o.name: np.asarray(o.contents.fp32_contents, np.float32).reshape(o.shape)
            for o in response.outputs}


def test_health_and_metadata_round_trip(served: Any) -> None:
    _, stub, channel = served
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    for version in ("", "1"):
        assert stub.ModelReady(pb.ModelReadyRequest(name="synthetic-afm", version=version)).ready
    server = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert server.name == "afm-serving" and "binary_tensor_data" in server.extensions
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="synthetic-afm", version="1"))
    assert (meta.name, list(meta.versions), meta.platform) == ("synthetic-afm", ["1"], "onnxruntime_onnx")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("indices", "INT64", [-1, 6, 1]), ("weights", "FP32", [-1, 6, 1])]
    assert [t.name for t in meta.outputs] == list(OUTPUT_NAMES)
    for call, request in ((stub.ModelReady, pb.ModelReadyRequest(name="nope")),
                          (stub.ModelReady, pb.ModelReadyRequest(name="synthetic-afm", version="9")),
                          (stub.ModelMetadata, pb.ModelMetadataRequest(name="nope"))):
        with pytest.raises(grpc.RpcError) as caught:
            call(request)
        assert caught.value.code() == Code.NOT_FOUND
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "inference.GRPCInferenceService"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
        assert status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("build", [typed_request, raw_request])
def test_infer_round_trips_the_bundles_outputs(served: Any, encoded: Any, build: Any) -> None:
    _, stub, _ = served
    bundle, indices, weights = encoded
    expected = bundle.run(indices, weights)
    response = stub.ModelInfer(build(indices, weights, id="42", model_version="1"))
    assert (response.model_name, response.model_version, response.id) == ("synthetic-afm", "1", "42")
    assert bool(response.raw_output_contents) == (build is raw_request)
    outputs = outputs_of(response)
    assert list(outputs) == list(OUTPUT_NAMES)
    for name, array in outputs.items():
        np.testing.assert_allclose(array, getattr(expected, name), rtol=0, atol=1e-6)


def test_infer_honours_the_requested_outputs(served: Any, encoded: Any) -> None:
    _, stub, _ = served
    bundle, indices, weights = encoded
    wanted = [pb.ModelInferRequest.InferRequestedOutputTensor(name=n)
              for n in ("contributions", "score", "score")]
    outputs = outputs_of(stub.ModelInfer(raw_request(indices, weights, outputs=wanted)))
    assert list(outputs) == ["contributions", "score"]
    np.testing.assert_allclose(outputs["score"], bundle.run(indices, weights).score, atol=1e-6)


def one() -> tuple[np.ndarray, np.ndarray]:
    return np.ones((1, 6, 1), np.int64), np.ones((1, 6, 1), np.float32)


def edited(build: Any, edit: Any, *arrays: np.ndarray) -> pb.ModelInferRequest:
    request = build(*(arrays or one()))
    edit(request)
    return request


def _set(tensor: Any, **fields: Any) -> None:
    for key, value in fields.items():
        if key == "shape":
            del tensor.shape[:]
            tensor.shape.extend(value)
        else:
            setattr(tensor, key, value)


BAD: list[tuple[str, pb.ModelInferRequest, Code, str]] = [
    ("shape", edited(typed_request, lambda r: _set(r.inputs[0], shape=[1, 6, 2])),
     Code.INVALID_ARGUMENT, "holds 12 values, data has 6"),
    ("shape vs model", typed_request(np.ones((2, 3, 1), np.int64), np.ones((2, 3, 1), np.float32)),
     Code.INVALID_ARGUMENT, "shape [B, 6, 1]"),
    ("negative dim", edited(raw_request, lambda r: _set(r.inputs[1], shape=[-1, 6, 1])),
     Code.INVALID_ARGUMENT, "not a shape"),
    ("datatype", edited(typed_request, lambda r: _set(r.inputs[0], datatype="INT32")),
     Code.INVALID_ARGUMENT, "must be INT64"),
    ("datatype raw", edited(raw_request, lambda r: _set(r.inputs[1], datatype="FP16")),
     Code.INVALID_ARGUMENT, "must be FP32"),
    ("wrong contents", edited(typed_request, lambda r: (
        r.inputs[0].contents.ClearField("int64_contents"),
        r.inputs[0].contents.int_contents.extend([1] * 6))),
     Code.INVALID_ARGUMENT, "contents.int64_contents"),
    ("index", typed_request(np.full((1, 6, 1), 10**6, np.int64), one()[1]),
     Code.INVALID_ARGUMENT, "indices must lie in"),
    ("negative index", raw_request(np.full((1, 6, 1), -1, np.int64), one()[1]),
     Code.INVALID_ARGUMENT, "indices must lie in"),
    ("nan", typed_request(one()[0], np.full((1, 6, 1), np.nan, np.float32)),
     Code.INVALID_ARGUMENT, "finite"),
    ("raw size", edited(raw_request, lambda r: r.raw_input_contents.__setitem__(0, b"\0" * 40)),
     Code.INVALID_ARGUMENT, "takes 48 bytes, got 40"),
    ("raw count", edited(raw_request, lambda r: r.raw_input_contents.pop()),
     Code.INVALID_ARGUMENT, "raw_input_contents has 1 entries for 2 inputs"),
    ("raw and contents", edited(raw_request, lambda r: r.inputs[0].contents.int64_contents.extend(
        [1] * 6)), Code.INVALID_ARGUMENT, "both given"),
    ("unknown input", edited(typed_request, lambda r: _set(r.inputs[0], name="other")),
     Code.INVALID_ARGUMENT, "unknown input 'other'"),
    ("missing input", edited(typed_request, lambda r: r.inputs.pop()),
     Code.INVALID_ARGUMENT, "missing input(s) ['weights']"),
    ("twice", edited(typed_request, lambda r: _set(r.inputs[1], name="indices")),
     Code.INVALID_ARGUMENT, "given twice"),
    ("unknown output", edited(typed_request, lambda r: r.outputs.add(name="nope")),
     Code.INVALID_ARGUMENT, "unknown output(s)"),
    ("no rows", typed_request(np.ones((0, 6, 1), np.int64), np.ones((0, 6, 1), np.float32)),
     Code.INVALID_ARGUMENT, "no instances"),
    ("model", edited(typed_request, lambda r: _set(r, model_name="other")),
     Code.NOT_FOUND, "model other is not served"),
    ("version", edited(typed_request, lambda r: _set(r, model_version="7")),
     Code.NOT_FOUND, "version 7"),
    ("batch", typed_request(np.ones((65, 6, 1), np.int64), np.ones((65, 6, 1), np.float32)),
     Code.RESOURCE_EXHAUSTED, "of shape [65, 6, 1] is over the limit"),
    ("tensor limit", edited(raw_request, lambda r: _set(r.inputs[0], shape=[10**6, 6, 1])),
     Code.RESOURCE_EXHAUSTED, "over the limit"),
    ("message size", raw_request(np.ones((2000, 6, 1), np.int64), np.ones((2000, 6, 1), np.float32)),
     Code.RESOURCE_EXHAUSTED, ""),
]


@pytest.mark.parametrize(("request_", "code", "phrase"), [case[1:] for case in BAD],
                         ids=[case[0] for case in BAD])
def test_bad_inputs_get_their_status_code(served: Any, request_: pb.ModelInferRequest, code: Code,
                                          phrase: str) -> None:
    _, stub, _ = served
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request_)
    assert caught.value.code() == code, caught.value.details()
    assert phrase in (caught.value.details() or "")


def test_metrics_count_grpc_calls_by_method_and_code(served: Any) -> None:
    client, stub, _ = served
    stub.ServerLive(pb.ServerLiveRequest())
    stub.ModelInfer(typed_request(*one()))
    with pytest.raises(grpc.RpcError):
        stub.ModelInfer(typed_request(np.full((1, 6, 1), -1, np.int64), one()[1]))
    text = client.get("/metrics").text
    for line in ('afm_grpc_requests_total{code="OK",method="ServerLive"} 1.0',
                 'afm_grpc_requests_total{code="OK",method="ModelInfer"} 1.0',
                 'afm_grpc_requests_total{code="INVALID_ARGUMENT",method="ModelInfer"} 1.0',
                 'afm_grpc_request_duration_seconds_count{method="ModelInfer"} 2.0'):
        assert line in text
    assert "afm_instances_scored_total 1.0" in text  # the same runtime as REST


def test_not_ready_is_unavailable(served: Any) -> None:
    client, stub, channel = served
    client.portal.call(client.app.state.runtime.stop)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(typed_request(*one()))
    assert caught.value.code() == Code.UNAVAILABLE
    assert not stub.ServerReady(pb.ServerReadyRequest()).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name="synthetic-afm")).ready
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest()).status
    assert status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_reload_under_grpc_load_loses_no_request(make_settings: SettingsFactory,
                                                 models_root: Path) -> None:
    settings = make_settings(model_dir=models_root / "v1", models_root=models_root,
                             admin_token=TOKEN, grpc_port=0)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    versions: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        target = f"127.0.0.1:{client.app.state.server.grpc.port}"  # type: ignore[attr-defined]

        def load() -> None:
            with grpc.insecure_channel(target) as channel:
                stub = GRPCInferenceServiceStub(channel)
                while not stop.is_set():
                    try:
                        versions.append(stub.ModelInfer(raw_request(*one()), timeout=10).model_version)
                    except grpc.RpcError as e:
                        failures.append(e)

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            for model_dir in ("v2", "v1", "v2", "v1", "v2"):
                response = client.post("/admin/reload", headers=auth, json={"model_dir": model_dir})
                assert response.status_code == 200, response.text
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
    assert not failures, failures[:3]
    assert {"1", "2"} <= set(versions) and len(versions) >= 20


def run_isolated(code: str, timeout: float = 120) -> str:
    """Python in a fresh process with tritonclient.grpc, whose protobuf names clash with ours."""
    pytest.importorskip("tritonclient")
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_proto_matches_the_protocol_as_triton_ships_it(tmp_path: Path) -> None:
    """Every message, field number and type, and method of our .proto is Triton's (its
    grpc_service.proto is the protocol's with Triton's extensions added)."""
    pytest.importorskip("grpc_tools")
    out = run_isolated(f"""
        from grpc_tools import protoc
        from google.protobuf import descriptor_pb2
        import tritonclient.grpc.service_pb2 as triton
        assert protoc.main(["protoc", "-I{PROTO.parent}", "--descriptor_set_out={tmp_path}/d.pb",
                            "{PROTO.name}"]) == 0
        ours = descriptor_pb2.FileDescriptorSet.FromString(open("{tmp_path}/d.pb", "rb").read()).file[0]
        theirs = descriptor_pb2.FileDescriptorProto()
        triton.DESCRIPTOR.CopyToProto(theirs)
        assert ours.package == theirs.package == "inference"

        def compare(mine, other, path):
            fields = {{f.name: f for f in other.field}}
            for f in mine.field:
                o = fields[f.name]
                shape = (f.number, f.type, f.label, f.type_name)
                assert shape == (o.number, o.type, o.label, o.type_name), path + f.name
            nested = {{n.name: n for n in other.nested_type}}
            for n in mine.nested_type:
                compare(n, nested[n.name], path + n.name + ".")

        messages = {{m.name: m for m in theirs.message_type}}
        for message in ours.message_type:
            compare(message, messages[message.name], message.name + ".")
        methods = {{m.name: m for m in theirs.service[0].method}}
        for method in ours.service[0].method:
            other = methods[method.name]
            assert (method.input_type, method.output_type) == (other.input_type, other.output_type)
        print(len(ours.message_type), len(ours.service[0].method))
    """)
    assert out.split() == ["14", "6"]


def test_tritonclient_grpc_round_trip(served: Any, encoded: Any) -> None:
    """Triton's own gRPC client, unmodified, against our server: it sends raw contents."""
    client, *_ = served
    bundle, indices, weights = encoded
    port = client.app.state.server.grpc.port
    out = run_isolated(f"""
        import numpy as np
        import tritonclient.grpc as g
        client = g.InferenceServerClient("127.0.0.1:{port}")
        assert client.is_server_live() and client.is_model_ready("synthetic-afm")
        indices = np.array({indices.tolist()}, np.int64)
        weights = np.array({weights.tolist()}, np.float32)
        inputs = [g.InferInput("indices", list(indices.shape), "INT64"),
                  g.InferInput("weights", list(weights.shape), "FP32")]
        inputs[0].set_data_from_numpy(indices)
        inputs[1].set_data_from_numpy(weights)
        result = client.infer("synthetic-afm", inputs, outputs=[g.InferRequestedOutput("score")])
        print(" ".join(repr(float(x)) for x in result.as_numpy("score")))
        try:
            client.infer("synthetic-afm", inputs, model_version="5")
        except g.InferenceServerException as e:
            print(e.status())
    """)
    scores, status = out.strip().splitlines()
    np.testing.assert_allclose([float(x) for x in scores.split()],
                               bundle.run(indices, weights).score, atol=1e-6)
    assert status == "StatusCode.NOT_FOUND"


def test_afm_serve_refuses_a_busy_grpc_port(bundle_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("AFM_GRPC_PORT", str(busy.getsockname()[1]))
        assert cli.main(["--model-dir", str(bundle_dir), "--port", str(free_port())]) == 2
    assert "AFM_GRPC_PORT" in capsys.readouterr().err
    monkeypatch.setenv("AFM_GRPC_PORT", "0")
    assert cli.main(["--model-dir", str(bundle_dir), "--workers", "2"]) == 2
    assert "needs AFM_WORKERS=1" in capsys.readouterr().err


@pytest.mark.slow
def test_afm_serve_workers_share_the_grpc_port(tmp_path: Path, bundle_dir: Path) -> None:
    """Two worker processes under uvloop, both on AFM_GRPC_PORT; metrics summed over them."""
    port = free_port()
    env = server_env(AFM_GRPC_PORT=str(port))
    with serve(["--model-dir", str(bundle_dir), "--workers", "2"], env, tmp_path / "serve.log") as (url, _):
        for _ in range(8):
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:  # a new connection each
                response = GRPCInferenceServiceStub(channel).ModelInfer(raw_request(*one()), timeout=10)
                assert response.model_name == "synthetic-afm"
        scrape = httpx.get(url + "/metrics").text
    assert count(scrape, "afm_grpc_requests_total", {"method": "ModelInfer", "code": "OK"}) == 8
