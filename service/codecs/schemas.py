"""Protocol types: the request and response bodies of every route, with OpenAPI examples.

Requests are validated against these once. Responses are built as plain dicts on the
request path (a pydantic round trip per response would cost more than the model run), the
predictions by one renderer (`service.codecs.predictions`); these models document them, type
the client, and tests derive the keys responses must have from them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)

from model.features import FieldKind
from model.manifest import ModelKind, PairImportance, Task
from service.core.results import ModelRef  # the runtime's own type: one concept, one type

Token = StrictStr | StrictInt
# Documented precisely, validated by the model's feature space, which knows each field's
# kind and names the field in its errors.
FieldValue = Annotated[
    Any,
    WithJsonSchema(TypeAdapter(Token | StrictFloat | list[Token] | None).json_schema()),
]
Shown = str | list[str]

EXAMPLE_INSTANCE: dict[str, JsonValue] = {
    "f0": "v3", "f1": "v17", "f2": "v0", "f3": "v9", "f4": "v21", "f5": "v4",
}


def examples(*items: JsonValue) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(items)})


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


# --- /predict and /explain -------------------------------------------------------------


class ExplainOptions(_Body):
    top_k: StrictInt = Field(ge=1, le=100_000, description="Only the k pairs of largest |contribution|.")


class PredictRequest(_Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"instances": [EXAMPLE_INSTANCE]},
                {"instances": [EXAMPLE_INSTANCE], "explain": {"top_k": 3}},
            ]
        }
    )

    instances: list[dict[str, FieldValue]] = Field(
        min_length=1,
        description="Raw instances, field name to value: a string or integer for a categorical "
        "field, a list for a multi-valued field, a number for a numeric or bucketised field. "
        "A missing field (or null) is an empty field.",
    )
    explain: StrictBool | ExplainOptions = Field(
        default=False, description="true: every pair; {\"top_k\": n}: the n largest pairs."
    )


class EncodeRequest(_Body):
    model_config = examples({"instances": [EXAMPLE_INSTANCE]})

    instances: list[dict[str, FieldValue]] = Field(
        min_length=1, description="Raw instances, as `POST /predict` takes them."
    )


class OOVValue(_Body):
    field: str
    value: str


class LinearTerms(_Body):
    """Parallel lists, one element per field the instance holds."""

    fields: list[str]
    values: list[Shown]
    weights: list[float] = Field(description="Each field's first-order term w_i x_i.")


class PairTerms(_Body):
    """Parallel lists, one element per pair: present pairs, largest |contribution| first."""

    fields: list[tuple[str, str]]
    values: list[tuple[Shown, Shown]]
    attention: list[float] = Field(description="a_ij; sums to 1 over all the instance's pairs.")
    contributions: list[float] = Field(description="a_ij p^T (v_i * v_j) x_i x_j, signed.")


class Explanation(_Body):
    bias: float
    logit_shift: float = Field(description="ln(negative_keep_rate): the correction for the "
                               "negatives left out in training, a constant beside the bias; "
                               "0 for a model trained on every row.")
    calibration: Literal["none", "platt", "isotonic"] | None = Field(
        description="Binary tasks: the monotone map from score to probability, applied after "
        "the additive terms: none (sigmoid), platt or isotonic (fitted on the validation rows). "
        "null for regression.")
    linear: LinearTerms
    interaction: float = Field(description="Sum of every pair's contribution, listed or not.")
    pairs: PairTerms
    pairs_omitted: int = Field(description="Present pairs left out by top_k.")


class Prediction(_Body):
    score: float = Field(description="bias + logit_shift + sum(linear) + interaction.")
    probability: float | None = Field(
        default=None, description="Binary tasks: the explanation's calibration map of the score "
        "(sigmoid(score) where it is none).")
    prediction: float | None = Field(
        default=None, description="Regression tasks: the score clipped to the label range."
    )
    oov: list[OOVValue] = Field(description="Values out of vocabulary (scored as unknown).")
    impression_id: str | None = Field(
        default=None, description="Only when the service logs impressions and logged this "
        "instance: its id in the log, `<X-Request-ID>-<position>`, to report a click against.",
    )
    warning: str | None = Field(
        default=None, description="Only on an instance with no field present (every field "
        "missing or null): its score reflects no input.",
    )
    explanation: Explanation | None = None


PREDICTION_EXAMPLE: dict[str, JsonValue] = {
    "score": 1.87, "prediction": 1.87, "oov": [],
    "explanation": {
        "bias": -0.02, "logit_shift": 0.0, "calibration": None, "interaction": 1.71, "pairs_omitted": 13,
        "linear": {"fields": ["f0", "f1"], "values": ["v3", "v17"], "weights": [0.03, -0.01]},
        "pairs": {"fields": [["f2", "f3"], ["f4", "f5"]], "values": [["v0", "v9"], ["v21", "v4"]],
                  "attention": [0.41, 0.39], "contributions": [1.52, -0.4]},
    },
}


class PredictResponse(_Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"model": {"name": "synthetic-afm", "version": "1"},
                          "predictions": [PREDICTION_EXAMPLE]}]
        }
    )

    model: ModelRef
    predictions: list[Prediction]


class ExplainResponse(Prediction):
    model_config = examples({"model": {"name": "synthetic-afm", "version": "1"}, **PREDICTION_EXAMPLE})

    model: ModelRef


class ImportanceResponse(_Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"model": {"name": "synthetic-afm", "version": "1"}, "importance": [
                {"fields": ["f2", "f3"], "mean_attention": 0.41, "mean_abs_contribution": 0.70}
            ]}]
        }
    )

    model: ModelRef
    importance: list[PairImportance] = Field(
        description="Field pairs on the validation data, largest mean |contribution| first."
    )


class Tensor(_Body):
    name: str
    shape: list[int]
    datatype: str
    data: list[int] | list[float] = Field(description="Row-major, flat.")


class EncodedOOV(_Body):
    instance: int
    field: str
    value: str


class EncodeResponse(_Body):
    """The Open Inference Protocol inputs for these instances: post `{"inputs": inputs}` to
    `infer` and the scores are those `POST /predict` gives."""

    model_config = examples({
        "model": {"name": "synthetic-afm", "version": "1"},
        "infer": "/v2/models/synthetic-afm/versions/1/infer",
        "inputs": [
            {"name": "indices", "shape": [1, 6, 1], "datatype": "INT64",
             "data": [4, 48, 63, 103, 145, 161]},
            {"name": "weights", "shape": [1, 6, 1], "datatype": "FP32",
             "data": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]},
        ],
        "oov": [],
    })

    model: ModelRef
    infer: str = Field(description="The infer route of the model that encoded them.")
    inputs: list[Tensor]
    oov: list[EncodedOOV] = Field(description="Values out of vocabulary (encoded as unknown).")


# --- metadata, health, admin -------------------------------------------------------------


class FieldInfo(_Body):
    name: str
    kind: FieldKind
    vocabulary_size: int = Field(description="Known values (bucket count when bucketised).")
    max_entries: int


class ModelMetadata(_Body):
    model_config = examples({
        "name": "synthetic-afm", "version": "1", "kind": "afm", "task": "regression",
        "sha256": "ddb46f92" + "0" * 56, "created_at": "2026-11-24T02:09:30+00:00",
        "label_range": [-11.4, 8.2], "metrics": {"rmse": 0.081},
        "fields": [{"name": "f0", "kind": "categorical", "vocabulary_size": 30,
                    "max_entries": 1}],
        "pairs": [["f0", "f1"]],
    })

    name: str
    version: str
    kind: ModelKind
    task: Task
    sha256: str = Field(description="The bundle's sha256, verified at load: of model.onnx, or "
                                    "(format 3) of every file's sha256.")
    created_at: str
    label_range: tuple[float, float]
    fields: list[FieldInfo]
    pairs: list[tuple[str, str]]
    metrics: dict[str, float] = Field(description="Validation metrics from training.")


class Status(_Body):
    status: Literal["ok"] = "ok"


class ReadyStatus(_Body):
    ready: bool
    model: ModelRef | None = None


class ReloadRequest(_Body):
    model_config = examples({"model_dir": "synthetic-afm-2"})

    model_dir: str | None = Field(
        default=None, max_length=4096,
        description="A bundle directory inside AFM_MODELS_ROOT (relative to it, or absolute); "
        "omitted: reload the bundle being served from disk.",
    )


class ReloadResponse(_Body):
    model_config = examples({
        "model": {"name": "synthetic-afm", "version": "2"}, "sha256": "ddb46f92" + "0" * 56,
        "previous": {"name": "synthetic-afm", "version": "1"},
    })

    model: ModelRef
    sha256: str
    previous: ModelRef


class ShadowRequest(_Body):
    model_config = examples({"model_dir": "synthetic-afm-2", "fraction": 0.1})

    model_dir: str = Field(
        max_length=4096, description="A bundle directory inside AFM_MODELS_ROOT (relative to "
        "it, or absolute), loaded and verified as a reload's is.")
    fraction: float = Field(ge=0.0, le=1.0, description="Share of live requests the shadow "
                            "model also scores, after their answer.")


class ShadowModel(_Body):
    model: ModelRef
    sha256: str
    fraction: float


class ShadowResponse(_Body):
    model_config = examples({
        "model": {"name": "synthetic-afm", "version": "1"},
        "shadow": {"model": {"name": "synthetic-afm", "version": "2"},
                   "sha256": "ddb46f92" + "0" * 56, "fraction": 0.1},
    })

    model: ModelRef = Field(description="The live model.")
    shadow: ShadowModel | None = Field(description="The shadow model; null when there is none.")


class ErrorBody(_Body):
    model_config = examples({"error": "instance 0: unknown field 'f9'"})

    error: str


# --- Open Inference Protocol (V2) ---------------------------------------------------------


class ServerMetadata(_Body):
    model_config = examples({"name": "afm-serving", "version": "0.1.0",
                             "extensions": ["binary_tensor_data"]})

    name: str
    version: str
    extensions: list[str]


class TensorMetadata(_Body):
    name: str
    datatype: str
    shape: list[int]


class OIPModelMetadata(_Body):
    model_config = examples({
        "name": "synthetic-afm", "versions": ["1"], "platform": "onnxruntime_onnx",
        "inputs": [{"name": "indices", "datatype": "INT64", "shape": [-1, 6, 1]},
                   {"name": "weights", "datatype": "FP32", "shape": [-1, 6, 1]}],
        "outputs": [{"name": "score", "datatype": "FP32", "shape": [-1]}],
    })

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


Parameters = dict[str, str | int | float | bool]


class RequestInput(_Body):
    name: str
    shape: list[Annotated[StrictInt, Field(ge=0)]] = Field(max_length=8)
    datatype: str
    parameters: Parameters | None = None
    data: list[Any] | None = Field(
        default=None, description="Row-major tensor contents, flat or nested; omitted when "
        "`parameters.binary_data_size` sends them as binary data after the JSON.")


class RequestOutput(_Body):
    name: str
    parameters: Parameters | None = None


class InferenceRequest(_Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{
                "id": "42",
                "inputs": [
                    {"name": "indices", "shape": [1, 6, 1], "datatype": "INT64",
                     "data": [4, 48, 63, 103, 145, 161]},
                    {"name": "weights", "shape": [1, 6, 1], "datatype": "FP32",
                     "data": [1, 1, 1, 1, 1, 1]},
                ],
            }]
        }
    )

    id: str | None = Field(default=None, max_length=256)
    parameters: Parameters | None = None
    inputs: list[RequestInput] = Field(min_length=1, max_length=8)
    outputs: list[RequestOutput] | None = Field(default=None, max_length=8)


class ResponseOutput(_Body):
    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = None
    data: list[float] | None = Field(
        default=None, description="Omitted for an output sent as binary data "
        "(`parameters.binary_data_size` bytes after the JSON).")


class InferenceResponse(_Body):
    model_config = examples({
        "model_name": "synthetic-afm", "model_version": "1", "id": "42",
        "outputs": [{"name": "score", "shape": [1], "datatype": "FP32", "data": [1.87]}],
    })

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


# --- KServe V1 -----------------------------------------------------------------------------

Rows = list[dict[str, FieldValue]]


class V1Request(_Body):
    """KServe's V1 (TensorFlow Serving's REST) body: `instances`, a list of instances, or
    `inputs`, the same list or the columnar form, field name to the list of its values."""

    model_config = examples({"instances": [EXAMPLE_INSTANCE]},
                            {"inputs": {"f0": ["v3", "v1"], "f1": ["v17", "v2"]}})

    instances: Rows | None = Field(default=None, min_length=1,
                                   description="Instances, as `POST /predict` takes them.")
    inputs: Rows | dict[str, list[FieldValue]] | None = Field(
        default=None, description="The instances as a list, or in columns: "
        "{field: [value of instance 0, value of instance 1, ...]}.")

    @model_validator(mode="after")
    def _one_form(self) -> V1Request:
        if (self.instances is None) == (self.inputs is None):
            raise ValueError("give exactly one of instances and inputs")
        if isinstance(self.inputs, dict):
            lengths = {len(values) for values in self.inputs.values()}
            if len(lengths) != 1 or 0 in lengths:
                raise ValueError("inputs in columns need the same number of values, at least "
                                 "one, in every field")
        elif self.inputs is not None and not self.inputs:
            raise ValueError("inputs must hold at least one instance")
        return self

    def rows(self) -> list[dict[str, Any]]:
        if self.instances is not None:
            return self.instances
        if isinstance(self.inputs, dict):
            names = list(self.inputs)
            return [dict(zip(names, values, strict=True))
                    for values in zip(*self.inputs.values(), strict=True)]
        return self.inputs or []


class V1PredictResponse(_Body):
    model_config = examples({"predictions": [0.73]})

    predictions: list[float] = Field(description="Per instance: the probability (binary "
                                     "models) or the prediction, clipped to the label range.")


class V1Explanation(Explanation):
    """`POST /predict`'s explanation of an instance with every pair, and its score:
    bias + logit_shift + sum(linear.weights) + interaction = score, the model's own
    decomposition."""

    score: float
    oov: list[OOVValue] = Field(description="Values out of vocabulary (scored as unknown).")


class V1ExplainResponse(_Body):
    model_config = examples({"predictions": [1.87], "explanations": [{
        "score": 1.87, "bias": -0.02, "logit_shift": 0.0, "calibration": None,
        "interaction": 1.71, "pairs_omitted": 0, "oov": [],
        "linear": {"fields": ["f0", "f1"], "values": ["v3", "v17"], "weights": [0.13, 0.05]},
        "pairs": {"fields": [["f0", "f1"]], "values": [["v3", "v17"]], "attention": [1.0],
                  "contributions": [1.71]},
    }]})

    predictions: list[float]
    explanations: list[V1Explanation]


class V1ModelReady(_Body):
    model_config = examples({"name": "synthetic-afm", "ready": True})

    name: str
    ready: bool


class V1Models(_Body):
    models: list[str]


class V1Live(_Body):
    status: Literal["alive"] = "alive"
