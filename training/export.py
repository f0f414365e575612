"""Export a trained model as a bundle: `model.onnx`, its weights in `model.onnx.data`, the
vocabularies in `vocabulary.arrow`, and `manifest.json` (format 3, `model.manifest`)."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import torch
from torch import nn

from model.afm import PairModel
from model.calibration import Calibration, Isotonic, NoCalibration, Platt
from model.features import FeatureSpace
from model.heap import trim_heap
from model.manifest import (
    FORMAT_VERSION,
    INPUT_NAMES,
    ONNX_DATA_FILE,
    ONNX_FILE,
    OUTPUT_NAMES,
    DataFingerprint,
    Manifest,
    PairImportance,
    Task,
    sha256_file,
)
from model.vocabulary import VOCABULARY_FILE, write_vocabularies
from training.downsample import logit_shift
from training.loop import TRIM_EVERY_BATCHES
from training.reference import build_reference
from training.shards import Shards

log = logging.getLogger(__name__)
OPSET = 17
IMPORTANCE_ROWS = 1 << 20


@dataclass(frozen=True)
class Serving:
    """What the graph does after the model's additive terms (recorded in the manifest)."""

    task: Task
    label_range: tuple[float, float]
    negative_keep_rate: float = 1.0
    calibration: Calibration = NoCalibration()

    @property
    def logit_shift(self) -> float:
        return logit_shift(self.negative_keep_rate)


class _Served(nn.Module):
    """The graph that is served: the score (with the downsampling correction, a constant on
    the logit), every explanation, and the prediction, in one run."""

    def __init__(self, model: PairModel, serving: Serving) -> None:
        super().__init__()
        self.model = model
        self.shift = serving.logit_shift
        self.predict = prediction_map(serving)

    def forward(self, indices: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
        explanation = self.model.explain(indices, weights)
        score = explanation.score + self.shift if self.shift else explanation.score
        return (score, explanation.attention, explanation.contributions, explanation.field_linear,
                self.predict(score))


def prediction_map(serving: Serving) -> nn.Module:
    """(B,) score -> (B,) prediction: the calibrated probability, or the clipped value."""
    if serving.task == "regression":
        return _Clip(*serving.label_range)
    calibration = serving.calibration
    if isinstance(calibration, Platt):
        return _Platt(calibration.a, calibration.b)
    if isinstance(calibration, Isotonic):
        return _PiecewiseLinear(calibration.x, calibration.y)
    return nn.Sigmoid()


class _Clip(nn.Module):
    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        self.low, self.high = low, high

    def forward(self, score: torch.Tensor) -> torch.Tensor:
        return score.clamp(self.low, self.high)


class _Platt(nn.Module):
    def __init__(self, a: float, b: float) -> None:
        super().__init__()
        self.a, self.b = a, b

    def forward(self, score: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.a * score + self.b)


class _PiecewiseLinear(nn.Module):
    """np.interp(score, x, y) as exportable ops: y0 + sum_k slope_k * (clamp(score, x_k,
    x_k+1) - x_k) over a (B, K) broadcast (no search op is needed)."""

    low: torch.Tensor
    high: torch.Tensor
    slope: torch.Tensor

    def __init__(self, x: list[float], y: list[float]) -> None:
        super().__init__()
        knots, values = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
        self.register_buffer("low", knots[:-1].float())  # (K,)
        self.register_buffer("high", knots[1:].float())
        self.register_buffer("slope", (values.diff() / knots.diff()).float())
        self.start = float(values[0])

    def forward(self, score: torch.Tensor) -> torch.Tensor:
        within = torch.minimum(torch.maximum(score[:, None], self.low), self.high)  # (B, K)
        return self.start + ((within - self.low) * self.slope).sum(dim=1)


TableDtype = Literal["float32", "float16"]


class _HalfTable(nn.Module):
    """An embedding table stored as float16, its rows cast to float32 after the lookup."""

    weight: torch.Tensor

    def __init__(self, table: nn.Embedding) -> None:
        super().__init__()
        self.register_buffer("weight", table.weight.detach().half())

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding(indices, self.weight).float()


@contextmanager
def _table_as(model: PairModel, dtype: TableDtype) -> Iterator[None]:
    """The model with its embedding table in `dtype` while exporting (restored after)."""
    if dtype == "float32":
        yield
        return
    table = model.embedding.embedding
    model.embedding.embedding = _HalfTable(table)  # type: ignore[assignment]
    try:
        yield
    finally:
        model.embedding.embedding = table


def export_onnx(model: PairModel, space: FeatureSpace, path: Path, serving: Serving,
                external: bool = True, table_dtype: TableDtype = "float32") -> None:
    """The served graph at `path`; `external`: its weights in `model.onnx.data` beside it
    (ONNX external data, one file), else inline (formats 1 and 2: at most 2 GB)."""
    with _table_as(model, table_dtype):
        _export(model, space, path, serving, external)


def _export(model: PairModel, space: FeatureSpace, path: Path, serving: Serving,
            external: bool) -> None:
    if not external:
        _torch_export(model, space, path, serving, external_data=False)
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        return
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        # torch writes a file per tensor; a bundle holds one file of every tensor (however
        # small: one layout for every bundle)
        _torch_export(model, space, Path(scratch) / ONNX_FILE, serving, external_data=True)
        graph = onnx.load(str(Path(scratch) / ONNX_FILE))
    (path.parent / ONNX_DATA_FILE).unlink(missing_ok=True)
    onnx.save_model(graph, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=ONNX_DATA_FILE, size_threshold=0)
    shutil.copymode(path, path.parent / ONNX_DATA_FILE)  # onnx creates it private (0600)
    del graph
    onnx.checker.check_model(str(path), full_check=True)


def _torch_export(model: PairModel, space: FeatureSpace, path: Path, serving: Serving,
                  external_data: bool) -> None:
    model.eval()
    example = (
        torch.ones(2, space.num_fields, space.max_entries, dtype=torch.int64),
        torch.ones(2, space.num_fields, space.max_entries, dtype=torch.float32),
    )
    dynamic = {name: {0: "batch"} for name in (*INPUT_NAMES, *OUTPUT_NAMES)}
    torch.onnx.export(
        _Served(model, serving).eval(),
        example,
        str(path),
        input_names=list(INPUT_NAMES),
        output_names=list(OUTPUT_NAMES),
        dynamic_axes=dynamic,
        opset_version=OPSET,
        dynamo=False,
        external_data=external_data,
    )


@torch.no_grad()
def pair_importance(
    model: PairModel, space: FeatureSpace, data: Shards, batch_size: int = 2048,
    max_rows: int = IMPORTANCE_ROWS,
) -> list[PairImportance]:
    """Mean attention and mean |contribution| per field pair, over the instances holding it
    (the first `max_rows` rows of `data`)."""
    model.eval()
    attention_sum = np.zeros(len(space.pairs))
    contribution_sum = np.zeros(len(space.pairs))
    count = np.zeros(len(space.pairs))
    for n, chunk in enumerate(data.chunks(batch_size), 1):
        if max_rows <= 0:
            break
        if n % TRIM_EVERY_BATCHES == 0:
            trim_heap()
        max_rows -= len(chunk)
        indices = torch.from_numpy(chunk.indices.astype(np.int64))
        weights = torch.from_numpy(chunk.weights)
        explanation = model.explain(indices, weights)
        _, pair_present = space.presence(chunk.weights)
        attention_sum += (explanation.attention.numpy() * pair_present).sum(axis=0)
        contribution_sum += (np.abs(explanation.contributions.numpy()) * pair_present).sum(axis=0)
        count += pair_present.sum(axis=0)
    count = np.maximum(count, 1)
    names = space.field_names
    return [
        PairImportance(
            fields=(names[i], names[j]),
            mean_attention=float(attention_sum[p] / count[p]),
            mean_abs_contribution=float(contribution_sum[p] / count[p]),
        )
        for p, (i, j) in enumerate(space.pairs)
    ]


def write_bundle(
    directory: Path,
    model: PairModel,
    space: FeatureSpace,
    *,
    name: str,
    version: str,
    serving: Serving,
    validation: Shards,
    training: dict[str, Any],
    data: dict[str, DataFingerprint],
    metrics: dict[str, float],
    format_version: Literal[2, 3] = FORMAT_VERSION,
    table_dtype: TableDtype = "float32",
) -> Manifest:
    """The bundle in `directory`; format_version 2 writes the layout before version 3
    (inline weights, vocabularies in the manifest), for comparisons and older servers."""
    directory.mkdir(parents=True, exist_ok=True)
    onnx_path = directory / ONNX_FILE
    export_onnx(model, space, onnx_path, serving, format_version >= 3, table_dtype)
    files: dict[str, str] = {}
    if format_version >= 3:
        write_vocabularies(directory / VOCABULARY_FILE, [f.vocabulary for f in space.fields])
        files = {name: sha256_file(directory / name) for name in (ONNX_DATA_FILE, VOCABULARY_FILE)}
    names = space.field_names
    manifest = Manifest(
        format_version=format_version,
        name=name,
        version=version,
        kind=model.config.kind,
        task=serving.task,
        bias=float(model.linear.bias.detach()),
        negative_keep_rate=serving.negative_keep_rate,
        logit_shift=serving.logit_shift,
        calibration=serving.calibration,
        label_range=serving.label_range,
        fields=space.fields,
        max_entries=space.max_entries,
        pairs=[(names[i], names[j]) for i, j in space.pairs],
        onnx_sha256=sha256_file(onnx_path),
        files=files,
        vocabulary_sizes=[len(f.vocabulary) for f in space.fields] if files else [],
        training=training,
        data=data,
        metrics=metrics,
        importance=pair_importance(model, space, validation),
        reference=build_reference(onnx_path, space, validation, torch.get_num_threads()),
        created_at=dt.datetime.now(dt.UTC),
    )
    manifest.write(directory)
    size = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
    log.info("bundle written to %s (%.1f MB)", directory, size / 1e6)
    return manifest
