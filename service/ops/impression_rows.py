"""What a request hands the impression log (`Scored`) and the rows the writer thread makes of
it: the columns of `model.impressions.impression_schema`, built for many requests at once,
a column at a time (docs/IMPRESSIONS.md)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from model import impressions as im
from model.bundle import Bundle, Scores
from model.features import Encoded, FieldSpec

ModelKey = tuple[str, str, str]  # name, version, sha256 of the bundle that scored


@dataclass(slots=True)
class Scored:
    """One request's scored instances, as the runtime hands them over: references only."""

    time_us: int  # when they were scored (Unix microseconds)
    request_id: str
    route: str
    bundle: Bundle  # the model that scored them (a reload does not change it)
    scores: Scores
    inputs: Sequence[Mapping[str, Any]] | Encoded  # field values, or the tensors (infer)
    oov: Sequence[tuple[int, str, str]]  # (instance, field, value) of field values
    impression_ids: list[str]  # one per instance, as the response gives them

    @property
    def rows(self) -> int:
        return len(self.scores.score)


def model_key(bundle: Bundle) -> ModelKey:
    manifest = bundle.manifest
    return manifest.name, manifest.version, manifest.onnx_sha256


def tables(records: Sequence[Scored]) -> Iterator[tuple[ModelKey, pa.Table]]:
    """The records' rows, one table per model and kind of input (field values or tensors)."""
    groups: dict[tuple[ModelKey, bool], list[Scored]] = {}
    for record in records:
        tensors = isinstance(record.inputs, Encoded)
        groups.setdefault((model_key(record.bundle), tensors), []).append(record)
    for (key, _), group in groups.items():
        yield key, impression_table(group)


def impression_table(records: Sequence[Scored]) -> pa.Table:
    """The rows of records scored by one model, all with field values or all with tensors."""
    bundle = records[0].bundle
    manifest = bundle.manifest
    counts = np.array([record.rows for record in records])
    total = int(counts.sum())
    which = np.repeat(np.arange(len(records)), counts)  # (N,) each row's record
    positions = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    scores = np.concatenate([record.scores.score for record in records])
    features, oov = _features(bundle, records)
    columns = {
        im.IMPRESSION_ID: pa.array([i for record in records for i in record.impression_ids],
                                   pa.string()),
        im.REQUEST_ID: pa.array([record.request_id for record in records], pa.string()).take(which),
        im.POSITION: pa.array(positions.astype(np.int32)),
        im.TIME: pa.array(np.repeat([record.time_us for record in records], counts), im.TIME_TYPE),
        im.ROUTE: pa.array([record.route for record in records], pa.string()).take(which),
        im.MODEL_NAME: pa.repeat(manifest.name, total),
        im.MODEL_VERSION: pa.repeat(manifest.version, total),
        im.MODEL_SHA256: pa.repeat(manifest.onnx_sha256, total),
        im.SCORE: pa.array(scores.astype(np.float64)),
        # The served value, computed as the response's was: elementwise on the same float32.
        im.PREDICTION: pa.array(bundle.prediction(scores).astype(np.float64)),
        im.OOV: pa.array(oov, pa.list_(pa.string())),
        im.FEATURES: features,
        im.SHADOW_MODEL_VERSION: pa.nulls(total, pa.string()),
        im.SHADOW_SCORE: pa.nulls(total, pa.float64()),
        im.SHADOW_PREDICTION: pa.nulls(total, pa.float64()),
    }
    schema = im.impression_schema(manifest.fields)
    return pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)


def _features(bundle: Bundle, records: Sequence[Scored]) -> tuple[pa.StructArray, list[list[str]]]:
    """The `features` and `oov` columns: field values as given, or tensors read back."""
    tensors = [record.inputs for record in records if isinstance(record.inputs, Encoded)]
    if tensors:
        indices = np.concatenate([encoded.indices for encoded in tensors])
        weights = np.concatenate([encoded.weights for encoded in tensors])
        return im.tensor_features(bundle.features, indices, weights)
    fields = bundle.manifest.fields
    instances = [instance for record in records if not isinstance(record.inputs, Encoded)
                 for instance in record.inputs]
    return im.features_array(fields, instances), _oov_fields(fields, records)


def _oov_fields(fields: Sequence[FieldSpec], records: Sequence[Scored]) -> list[list[str]]:
    """Per row, the fields holding a value out of vocabulary, each once, in field order."""
    order = {spec.name: position for position, spec in enumerate(fields)}
    out: list[list[str]] = [[]] * sum(record.rows for record in records)  # shared until set
    start = 0
    for record in records:
        by_row: dict[int, set[str]] = {}
        for row, field, _ in record.oov:
            by_row.setdefault(row, set()).add(field)
        for row, names in by_row.items():
            out[start + row] = sorted(names, key=order.__getitem__)
        start += record.rows
    return out
