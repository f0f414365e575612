"""`manifest.json`: what a bundle is, so that a server needs nothing but the bundle.

A bundle is a directory with `model.onnx` and this manifest. The ONNX graph takes
`indices` int64 (B, F, L) and `weights` float32 (B, F, L) and returns `score` (B,),
`attention` (B, P), `contributions` (B, P), `field_linear` (B, F) and `prediction` (B,):

    score      = bias + logit_shift + sum(field_linear) + sum(contributions)   (additive, exact)
    prediction = what a user is served: calibration(score), a probability (binary tasks), or
                 the score clipped to label_range (regression)

Bundles of format_version 1 have the first four outputs only (no shift, no calibration);
`model.bundle` computes their prediction in numpy. Format 3 keeps the graph's weights in
`model.onnx.data` beside the graph (ONNX external data: no 2 GB protobuf cap, and
onnxruntime maps the file rather than copying it into each worker) and the vocabularies in
`vocabulary.arrow` (`model.vocabulary`), with the sha256 of each file in `files`; formats 1
and 2 hold the weights in `model.onnx` and the vocabularies in this manifest.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.calibration import Calibration, NoCalibration
from model.features import FeatureSpace, FieldSpec
from model.reference import Reference
from model.vocabulary import VOCABULARY_FILE, VocabularyFileError, read_vocabularies

FORMAT_VERSION: Literal[3] = 3
MANIFEST_FILE = "manifest.json"
ONNX_FILE = "model.onnx"
ONNX_DATA_FILE = "model.onnx.data"
INPUT_NAMES = ("indices", "weights")
OUTPUT_NAMES = ("score", "attention", "contributions", "field_linear", "prediction")
# The graph's outputs by format_version (version 1 predates `prediction`).
GRAPH_OUTPUTS: dict[int, tuple[str, ...]] = {1: OUTPUT_NAMES[:4], 2: OUTPUT_NAMES, 3: OUTPUT_NAMES}
SHA256 = r"^[0-9a-f]{64}$"
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
    format_version: Literal[1, 2, 3] = FORMAT_VERSION
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
    onnx_sha256: str = Field(pattern=SHA256)
    onnx_file: str = ONNX_FILE
    files: dict[str, Annotated[str, Field(pattern=SHA256)]] = Field(default_factory=dict)
    """Format 3: the sha256 of the bundle's other files (the graph's weights, the vocabularies)."""
    vocabulary_sizes: list[int] = Field(default_factory=list)
    """Format 3: each field's vocabulary size in vocabulary.arrow, in field order."""
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
        self._check_layout()
        if (self.task != "binary" or self.format_version == 1) and (
                self.negative_keep_rate != 1.0 or self.calibration.kind != "none"):
            raise ValueError("negative_keep_rate and calibration need a binary task and format_version 2")
        if self.reference is not None and self._has_vocabularies():
            self.reference.check(space)
        return self

    def _has_vocabularies(self) -> bool:
        """False for a format-3 manifest read from manifest.json alone (`parse`)."""
        return self.format_version < 3 or self.vocabulary_sizes == [
            len(f.vocabulary) for f in self.fields]

    def _check_layout(self) -> None:
        if self.format_version < 3:
            if self.files or self.vocabulary_sizes:
                raise ValueError("files and vocabulary_sizes need format_version 3")
            return
        if len(self.vocabulary_sizes) != len(self.fields):
            raise ValueError(f"vocabulary_sizes holds {len(self.vocabulary_sizes)} sizes for "
                             f"{len(self.fields)} fields")
        if VOCABULARY_FILE not in self.files:
            raise ValueError(f"files must name {VOCABULARY_FILE} (format_version 3)")
        if any(Path(name).name != name or name in (MANIFEST_FILE, self.onnx_file)
               for name in self.files):
            raise ValueError(f"files must name other files of the bundle's directory, got "
                             f"{sorted(self.files)}")

    @property
    def digest(self) -> str:
        """The sha256 that names the bundle's model: the graph's, or (format 3, whose graph
        holds no weights) the sha256 of every file's sha256."""
        if not self.files:
            return self.onnx_sha256
        lines = [f"{name} {sha}\n" for name, sha in sorted({**self.files,
                                                            self.onnx_file: self.onnx_sha256}.items())]
        return hashlib.sha256("".join(lines).encode()).hexdigest()

    def feature_space(self) -> FeatureSpace:
        return FeatureSpace(self.fields)

    def write(self, directory: Path) -> Path:
        """manifest.json; format 3 leaves the vocabularies out (vocabulary.arrow holds them)."""
        path = directory / MANIFEST_FILE
        exclude = {"fields": {"__all__": {"vocabulary"}}} if self.format_version >= 3 else None
        path.write_text(self.model_dump_json(indent=2, exclude=exclude) + "\n")
        return path

    @classmethod
    def parse(cls, directory: Path) -> Manifest:
        """manifest.json alone: a format-3 manifest's fields have no vocabulary yet."""
        manifest = cls.model_validate_json((directory / MANIFEST_FILE).read_bytes())
        if manifest.format_version >= 3 and any(f.vocabulary for f in manifest.fields):
            raise ValueError(f"format_version 3 keeps vocabularies in {VOCABULARY_FILE}, "
                             f"not in {MANIFEST_FILE}")
        return manifest

    def with_vocabularies(self, directory: Path) -> Manifest:
        """The manifest with every field's vocabulary (format 3: from vocabulary.arrow,
        memory-mapped above a size; raises VocabularyFileError)."""
        if self.format_version < 3:
            return self
        vocabularies = read_vocabularies(directory / VOCABULARY_FILE, self.vocabulary_sizes)
        fields = [spec.model_copy(update={"vocabulary": vocabulary})
                  for spec, vocabulary in zip(self.fields, vocabularies, strict=True)]
        if self.reference is not None:
            try:
                self.reference.check(FeatureSpace(fields))
            except ValueError as e:
                raise VocabularyFileError(str(e)) from e
        return self.model_copy(update={"fields": fields})

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        """The manifest with its vocabularies (files unverified: `Bundle.load` verifies)."""
        return cls.parse(directory).with_vocabularies(directory)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
