"""What the server and the model it serves say about themselves, as typed protocol values:
the model's metadata (/metadata), and the Open Inference Protocol's server and model
metadata with the tensor shapes, built from `ModelInfo` once per model (`PerModel`); and
which shadow model is scored beside the live one."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from model.manifest import INPUT_NAMES
from service.codecs.schemas import FieldInfo, ModelMetadata, OIPModelMetadata, ServerMetadata, TensorMetadata
from service.core.model import ModelInfo
from service.core.results import ShadowStatus

SERVER_NAME = "afm-serving"
PLATFORM = "onnxruntime_onnx"
DATATYPES = {"indices": "INT64", "weights": "FP32"}
EXTENSIONS = ["binary_tensor_data"]  # service.codecs.infer, service.http.binary


def server_version() -> str:
    try:
        return version(SERVER_NAME)
    except PackageNotFoundError:
        return "0+unknown"


def server_metadata() -> ServerMetadata:
    return ServerMetadata(name=SERVER_NAME, version=server_version(), extensions=EXTENSIONS)


def model_metadata(info: ModelInfo) -> ModelMetadata:
    m = info.manifest
    return ModelMetadata(
        name=m.name,
        version=m.version,
        kind=m.kind,
        task=m.task,
        sha256=m.digest,
        created_at=m.created_at.isoformat(),
        label_range=m.label_range,
        fields=[
            FieldInfo(name=f.name, kind=f.kind, vocabulary_size=f.value_count,
                      max_entries=f.max_entries)
            for f in m.fields
        ],
        pairs=list(m.pairs),
        metrics=dict(m.metrics),
    )


def output_shapes(info: ModelInfo) -> dict[str, list[int]]:
    """Shapes of the outputs with the batch as -1 (OIP's variable dimension)."""
    pairs = len(info.manifest.pairs)
    return {
        "score": [-1],
        "attention": [-1, pairs],
        "contributions": [-1, pairs],
        "field_linear": [-1, info.input_shape[0]],
        "prediction": [-1],
    }


def oip_metadata(info: ModelInfo) -> OIPModelMetadata:
    shape = [-1, *info.input_shape]
    return OIPModelMetadata(
        name=info.ref.name,
        versions=[info.ref.version],
        platform=PLATFORM,
        inputs=[TensorMetadata(name=n, datatype=DATATYPES[n], shape=shape) for n in INPUT_NAMES],
        outputs=[
            TensorMetadata(name=name, datatype="FP32", shape=s)
            for name, s in output_shapes(info).items()
        ],
    )


def render_shadow(status: ShadowStatus) -> dict[str, Any]:
    """`ShadowResponse`: the live model and the shadow model beside it, if any."""
    shadow = None if status.shadow is None else {
        "model": status.shadow, "sha256": status.sha256, "fraction": status.fraction}
    return {"model": status.model, "shadow": shadow}
