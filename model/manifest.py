"""`manifest.json`: what a bundle is, so that a server needs nothing but the bundle.

A bundle is a directory with `model.onnx` and this manifest. The ONNX graph takes
`indices` int64 (B, F, L) and `weights` float32 (B, F, L) and returns `score` (B,),
`attention` (B, P), `contributions` (B, P), `field_linear` (B, F) and `prediction` (B,):

    score      = bias + logit_shift + sum(field_linear) + sum(contributions)   (additive, exact)
    prediction = what a user is served: calibration(score), a probability (binary tasks), or
                 the score clipped to label_range (regression)

Bundles of format_version 1 have the first four outputs only (no shift, no calibration);
`model.bundle` computes their prediction in numpy.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.calibration import Calibration, NoCalibration
from model.features import FeatureSpace, FieldSpec
from model.reference import Reference

FORMAT_VERSION: Literal[2] = 2
MANIFEST_FILE = "manifest.json"
ONNX_FILE = "model.onnx"
INPUT_NAMES = ("indices", "weights")
OUTPUT_NAMES = ("score", "attention", "contributions", "field_linear", "prediction")
# The graph's outputs by format_version (version 1 predates `prediction`).
GRAPH_OUTPUTS: dict[int, tuple[str, ...]] = {1: OUTPUT_NAMES[:4], 2: OUTPUT_NAMES}
SHIFT_TOLERANCE = 1e-9

Task = Literal["regression", "binary"]
ModelKind = Literal["afm", "fm"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


class PairImportance(_Strict):
    fields: tuple[str, str]
    mean_attention: float
    mean_abs_contribution: float


class DataFingerprint(_Strict):
    path: str
    sha256: str
    rows: int


class Manifest(_Strict):
    format_version: Literal[1, 2] = FORMAT_VERSION
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    version: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    kind: ModelKind
    task: Task
    bias: float
    """w0: score = bias + logit_shift + sum(field_linear) + sum(contributions)."""
    negative_keep_rate: float = Field(default=1.0, gt=0.0, le=1.0)
    """The share of negative rows the model was trained on (binary tasks; 1: all of them)."""
    logit_shift: float = 0.0
    """ln(negative_keep_rate), added to the score in the graph: the model trained on
    downsampled negatives predicts q, the traffic's probability is q / (q + (1 - q) / rate)."""
    calibration: Calibration = NoCalibration()
    """The monotone map from score to served probability (binary tasks), fitted on the
    validation rows after training and applied in the graph after the additive terms."""
    label_range: tuple[float, float]
    """Predictions are clipped to this range for regression metrics, as in the paper."""
    fields: list[FieldSpec]
    max_entries: int
    pairs: list[tuple[str, str]]
    onnx_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    onnx_file: str = ONNX_FILE
    training: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, DataFingerprint] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    importance: list[PairImportance] = Field(default_factory=list)
    reference: Reference | None = None
    """The validation rows' distributions, which drift monitoring compares traffic with
    (model/reference.py); absent from bundles written before it, which serve unmonitored."""
    created_at: datetime

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        space = FeatureSpace(self.fields)
        expected = [(space.field_names[i], space.field_names[j]) for i, j in space.pairs]
        if [tuple(p) for p in self.pairs] != expected:
            raise ValueError("pairs do not match the fields (expected every i < j in field order)")
        if self.max_entries != space.max_entries:
            raise ValueError(f"max_entries {self.max_entries} != fields' {space.max_entries}")
        if self.label_range[0] >= self.label_range[1]:
            raise ValueError(f"label_range must be increasing, got {self.label_range}")
        if abs(self.logit_shift - math.log(self.negative_keep_rate)) > SHIFT_TOLERANCE:
            raise ValueError(f"logit_shift {self.logit_shift} is not ln(negative_keep_rate "
                             f"{self.negative_keep_rate})")
        if (self.task != "binary" or self.format_version == 1) and (
                self.negative_keep_rate != 1.0 or self.calibration.kind != "none"):
            raise ValueError("negative_keep_rate and calibration need a binary task and format_version 2")
        if self.reference is not None:
            self.reference.check(space)
        return self

    def feature_space(self) -> FeatureSpace:
        return FeatureSpace(self.fields)

    def write(self, directory: Path) -> Path:
        path = directory / MANIFEST_FILE
        path.write_text(self.model_dump_json(indent=2) + "\n")
        return path

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        return cls.model_validate_json((directory / MANIFEST_FILE).read_bytes())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
