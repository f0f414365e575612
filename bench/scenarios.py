"""What the benchmark sends: the request kinds, and which loads run on which server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench.harness import Request
from model.bundle import Bundle
from model.features import FieldKind, FieldSpec
from model.manifest import Manifest

CONCURRENCY = (1, 16, 64)
BIG = 256
SEED = 2017
TRIVIAL = ("ping", "live")


@dataclass(frozen=True)
class Scenario:
    name: str
    request: Request
    instances: int  # per request (0 for the trivial endpoints)
    explain: bool = False


@dataclass(frozen=True)
class Load:
    config: str  # the server's label
    scenario: Scenario
    connections: int


def request_rows(fields: list[FieldSpec]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The 1-instance and the BIG-instance requests' instances."""
    rng = np.random.default_rng(SEED)
    return [instance(fields, rng)], [instance(fields, rng) for _ in range(BIG)]


def scenarios(model_dir: Path) -> dict[str, Scenario]:
    manifest = Manifest.read(model_dir)
    one, many = request_rows(manifest.fields)
    out = [Scenario("ping", Request("GET", "/ping"), 0),
           Scenario("live", Request("GET", "/v2/health/live"), 0)]
    for rows in (one, many):
        for suffix, explain in (("", False), ("-explain", True), ("-top3", {"top_k": 3})):
            name = f"predict-{len(rows)}{suffix}"
            body = orjson.dumps({"instances": rows, "explain": explain})
            out.append(Scenario(name, Request("POST", "/predict", body), len(rows), bool(explain)))
    out.append(Scenario("infer-1", infer_request(manifest, one), 1))
    return {s.name: s for s in out}


TENSOR_OUTPUTS = {"score": ["score"], "pairs": ["score", "attention", "contributions"]}


def tensor_scenarios(model_dir: Path) -> dict[str, Scenario]:
    """Open Inference Protocol infer of the BIG instances of `predict-256`, as binary tensors
    both ways: the score alone, and with every pair's attention and contribution."""
    bundle = Bundle.load(model_dir)
    encoded = bundle.features.encode(request_rows(bundle.manifest.fields)[1])
    raw = [encoded.indices.astype("<i8").tobytes(), encoded.weights.astype("<f4").tobytes()]
    shape = list(encoded.indices.shape)
    out = {}
    for label, outputs in TENSOR_OUTPUTS.items():
        head = orjson.dumps({
            "inputs": [{"name": name, "shape": shape, "datatype": datatype,
                        "parameters": {"binary_data_size": len(data)}}
                       for name, datatype, data in zip(("indices", "weights"), ("INT64", "FP32"),
                                                       raw, strict=True)],
            "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in outputs],
        })
        headers = (("Content-Type", "application/octet-stream"),
                   ("Inference-Header-Content-Length", str(len(head))))
        name = f"infer-{BIG}-{label}"
        out[name] = Scenario(name, Request("POST", f"/v2/models/{bundle.manifest.name}/infer",
                                           head + b"".join(raw), headers), BIG, label == "pairs")
    return out


def infer_request(manifest: Manifest, rows: list[dict[str, Any]]) -> Request:
    """Open Inference Protocol infer of the rows' tensors as JSON (what /encode answers),
    every output asked for by default."""
    encoded = manifest.feature_space().encode(rows)
    shape = list(encoded.indices.shape)
    body = orjson.dumps({"inputs": [
        {"name": "indices", "shape": shape, "datatype": "INT64", "data": encoded.indices.ravel().tolist()},
        {"name": "weights", "shape": shape, "datatype": "FP32", "data": encoded.weights.ravel().tolist()},
    ]})
    return Request("POST", f"/v2/models/{manifest.name}/infer", body)


def instance(fields: list[FieldSpec], rng: np.random.Generator) -> dict[str, Any]:
    """Every field holds a known value (the common case for a deployed model)."""
    return {spec.name: _value(spec, rng) for spec in fields}


def _value(spec: FieldSpec, rng: np.random.Generator) -> Any:
    if spec.kind == FieldKind.NUMERIC:
        return round(float(rng.normal(spec.center, spec.scale)), 4)
    if spec.kind == FieldKind.BUCKETIZED:
        edges = spec.boundaries or [0.0]
        return round(float(rng.uniform(edges[0] - 1, edges[-1] + 1)), 4)
    if spec.kind == FieldKind.MULTI:
        count = int(rng.integers(1, min(spec.max_entries, len(spec.vocabulary)) + 1))
        picked = rng.choice(len(spec.vocabulary), size=count, replace=False).tolist()
        return [str(spec.vocabulary[k]) for k in picked]
    # a position, not rng.choice(vocabulary): a mapped vocabulary is not copied into an array
    return str(spec.vocabulary[int(rng.integers(len(spec.vocabulary)))])


def plan(all_scenarios: dict[str, Scenario], main: str, batching: list[str],
         workers: list[str]) -> list[Load]:
    """Everything on the main server; on the others, what the comparison needs."""
    loads = [Load(main, s, c) for s in all_scenarios.values() for c in CONCURRENCY]
    compared = [("ping", (16, 64)), ("predict-1", CONCURRENCY), ("predict-256", (1, 16))]
    for config in [*batching, *workers]:
        loads += [Load(config, all_scenarios[name], c) for name, cs in compared for c in cs]
    return loads
