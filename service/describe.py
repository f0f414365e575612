"""What a loaded bundle says about itself: model metadata and its OIP tensor metadata."""

from __future__ import annotations

from typing import Any

from model.bundle import Bundle
from model.manifest import INPUT_NAMES

PLATFORM = "onnxruntime_onnx"
DATATYPES = {"indices": "INT64", "weights": "FP32"}


def metadata(bundle: Bundle) -> dict[str, Any]:
    m = bundle.manifest
    return {
        "name": m.name,
        "version": m.version,
        "kind": m.kind,
        "task": m.task,
        "sha256": m.onnx_sha256,
        "created_at": m.created_at.isoformat(),
        "label_range": list(m.label_range),
        "fields": [
            {"name": f.name, "kind": f.kind.value, "vocabulary_size": len(f.values),
             "max_entries": f.max_entries}
            for f in m.fields
        ],
        "pairs": [list(p) for p in m.pairs],
        "metrics": dict(m.metrics),
    }


def output_shapes(bundle: Bundle) -> dict[str, list[int]]:
    """Shapes of the outputs with the batch as -1 (OIP's variable dimension)."""
    space = bundle.features
    return {
        "score": [-1],
        "attention": [-1, len(space.pairs)],
        "contributions": [-1, len(space.pairs)],
        "field_linear": [-1, space.num_fields],
    }


def oip_metadata(bundle: Bundle) -> dict[str, Any]:
    space = bundle.features
    shape = [-1, space.num_fields, space.max_entries]
    return {
        "name": bundle.manifest.name,
        "versions": [bundle.manifest.version],
        "platform": PLATFORM,
        "inputs": [{"name": n, "datatype": DATATYPES[n], "shape": shape} for n in INPUT_NAMES],
        "outputs": [
            {"name": name, "datatype": "FP32", "shape": s}
            for name, s in output_shapes(bundle).items()
        ],
    }
