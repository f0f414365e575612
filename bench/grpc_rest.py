"""gRPC ModelInfer against REST infer (JSON, and the binary tensor extension) at 1 and 256
rows, on one afm-serve (one worker) serving both on 127.0.0.1.

The load generator is CLIENTS processes, each a closed loop of one request at a time on its
own connection (grpc's sync stub, or httpx), for SECONDS. Beside throughput it reports the
server's CPU seconds a request (from /proc, the whole process group): on 2 shared cores the
clients take CPU too, so CPU a request is the figure that does not depend on whether the
clients or the server ran out of CPU first.

    OMP_NUM_THREADS=1 python -m bench.grpc_rest --model-dir runs/default [--seconds 10] [--clients 4]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np

from bench.harness import ServerProcess, free_port
from model.bundle import Bundle

KINDS = ("grpc-raw", "grpc-typed", "rest-json", "rest-binary")


def tensors(model_dir: Path, rows: int) -> tuple[np.ndarray, np.ndarray]:
    space = Bundle.load(model_dir).features
    rng = np.random.default_rng(0)
    shape = (rows, space.num_fields, space.max_entries)
    return rng.integers(0, space.num_features, shape), np.ones(shape, np.float32)


def client(kind: str, target: str, model: str, model_dir: Path, rows: int, seconds: float,
           out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    indices, weights = tensors(model_dir, rows)
    send = _grpc_sender(kind, target, model, indices, weights) if kind.startswith("grpc") \
        else _rest_sender(kind, target, model, indices, weights)
    latencies = []
    deadline = time.perf_counter() + seconds
    while (start := time.perf_counter()) < deadline:
        send()
        latencies.append(time.perf_counter() - start)
    out.put(latencies)


def _grpc_sender(kind: str, target: str, model: str, indices: np.ndarray, weights: np.ndarray):  # type: ignore[no-untyped-def]
    import grpc

    from service.grpc.proto import grpc_predict_v2_pb2 as pb
    from service.grpc.proto.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    tensor = pb.ModelInferRequest.InferInputTensor
    inputs = [tensor(name="indices", datatype="INT64", shape=indices.shape),
              tensor(name="weights", datatype="FP32", shape=weights.shape)]
    if kind == "grpc-raw":
        request = pb.ModelInferRequest(model_name=model, inputs=inputs, raw_input_contents=[
            indices.astype("<i8").tobytes(), weights.astype("<f4").tobytes()])
    else:
        inputs[0].contents.int64_contents.extend(indices.ravel().tolist())
        inputs[1].contents.fp32_contents.extend(weights.ravel().tolist())
        request = pb.ModelInferRequest(model_name=model, inputs=inputs)
    stub = GRPCInferenceServiceStub(grpc.insecure_channel(target))
    return lambda: stub.ModelInfer(request, timeout=30)


def _rest_sender(kind: str, target: str, model: str, indices: np.ndarray, weights: np.ndarray):  # type: ignore[no-untyped-def]
    import httpx

    http = httpx.Client(base_url=target, timeout=30)
    url = f"/v2/models/{model}/infer"
    if kind == "rest-json":
        body = json.dumps({"inputs": [
            {"name": "indices", "shape": list(indices.shape), "datatype": "INT64",
             "data": indices.ravel().tolist()},
            {"name": "weights", "shape": list(weights.shape), "datatype": "FP32",
             "data": weights.ravel().tolist()}]}).encode()
        headers = {"content-type": "application/json"}
    else:
        raw_i, raw_w = indices.astype("<i8").tobytes(), weights.astype("<f4").tobytes()
        head = json.dumps({"inputs": [
            {"name": "indices", "shape": list(indices.shape), "datatype": "INT64",
             "parameters": {"binary_data_size": len(raw_i)}},
            {"name": "weights", "shape": list(weights.shape), "datatype": "FP32",
             "parameters": {"binary_data_size": len(raw_w)}}],
            "parameters": {"binary_data_output": True}}).encode()
        body = head + raw_i + raw_w
        headers = {"content-type": "application/octet-stream",
                   "inference-header-content-length": str(len(head))}

    def send() -> None:
        response = http.post(url, content=body, headers=headers)
        assert response.status_code == 200, response.text[:200]

    return send


def run(kind: str, server: ServerProcess, grpc_port: int, model: str, model_dir: Path,
        rows: int, clients: int, seconds: float) -> dict[str, float]:
    target = f"127.0.0.1:{grpc_port}" if kind.startswith("grpc") else server.url
    out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs = [multiprocessing.Process(target=client, args=(kind, target, model, model_dir, rows,
                                                          seconds, out)) for _ in range(clients)]
    cpu = server.cpu_seconds()
    for proc in procs:
        proc.start()
    latencies = [x for _ in procs for x in out.get(timeout=seconds + 120)]
    for proc in procs:
        proc.join()
    cpu = server.cpu_seconds() - cpu
    count = len(latencies)
    return {"rows": rows, "requests": count, "req_per_s": round(count / seconds, 1),
            "rows_per_s": round(count * rows / seconds),
            "p50_ms": round(float(np.median(latencies)) * 1e3, 2),
            "p99_ms": round(float(np.percentile(latencies, 99)) * 1e3, 2),
            "server_cpu_us_per_request": round(cpu / max(count, 1) * 1e6)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.grpc_rest", description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    args = parser.parse_args(argv)
    model = Bundle.load(args.model_dir).manifest.name
    grpc_port = free_port()
    env = {**os.environ, "AFM_GRPC_PORT": str(grpc_port), "AFM_LOG_LEVEL": "warning",
           "OMP_NUM_THREADS": "1"}
    with ServerProcess(["--model-dir", str(args.model_dir)], env) as server:
        server.wait_ready()
        print(json.dumps({"load_average": os.getloadavg(), "clients": args.clients,
                          "seconds": args.seconds}))
        for rows in args.rows:
            for kind in args.kinds:
                result = run(kind, server, grpc_port, model, args.model_dir, rows, args.clients,
                             args.seconds)
                print(json.dumps({"kind": kind, **result, "load_average": os.getloadavg()[0]}),
                      flush=True)


if __name__ == "__main__":
    main()
