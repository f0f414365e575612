"""What the server and the bundle it serves say about themselves, as typed protocol values:
the model's metadata (/metadata), and the Open Inference Protocol's server and model
metadata with the tensor shapes."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from model.bundle import Bundle
from model.manifest import INPUT_NAMES
from service.schemas import FieldInfo, ModelMetadata, OIPModelMetadata, ServerMetadata, TensorMetadata

SERVER_NAME = "afm-serving"
PLATFORM = "onnxruntime_onnx"
DATATYPES = {"indices": "INT64", "weights": "FP32"}
EXTENSIONS = ["binary_tensor_data"]  # service.http.binary


def server_version() -> str:
    try:
        return version(SERVER_NAME)
    except PackageNotFoundError:
        return "0+unknown"


def server_metadata() -> ServerMetadata:
    return ServerMetadata(name=SERVER_NAME, version=server_version(), extensions=EXTENSIONS)


def model_metadata(bundle: Bundle) -> ModelMetadata:
    m = bundle.manifest
    return ModelMetadata(
        name=m.name,
        version=m.version,
        kind=m.kind,
        task=m.task,
        sha256=m.onnx_sha256,
        created_at=m.created_at.isoformat(),
        label_range=m.label_range,
        fields=[
            FieldInfo(name=f.name, kind=f.kind, vocabulary_size=len(f.values),
                      max_entries=f.max_entries)
            for f in m.fields
        ],
        pairs=list(m.pairs),
        metrics=dict(m.metrics),
    )


def output_shapes(bundle: Bundle) -> dict[str, list[int]]:
    """Shapes of the outputs with the batch as -1 (OIP's variable dimension)."""
    space = bundle.features
    return {
        "score": [-1],
        "attention": [-1, len(space.pairs)],
        "contributions": [-1, len(space.pairs)],
        "field_linear": [-1, space.num_fields],
        "prediction": [-1],
    }


def oip_metadata(bundle: Bundle) -> OIPModelMetadata:
    space = bundle.features
    shape = [-1, space.num_fields, space.max_entries]
    return OIPModelMetadata(
        name=bundle.manifest.name,
        versions=[bundle.manifest.version],
        platform=PLATFORM,
        inputs=[TensorMetadata(name=n, datatype=DATATYPES[n], shape=shape) for n in INPUT_NAMES],
        outputs=[
            TensorMetadata(name=name, datatype="FP32", shape=s)
            for name, s in output_shapes(bundle).items()
        ],
    )
