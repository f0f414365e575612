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
from model.impression_columns import FeatureColumns
from service.ops.shadow_slot import ShadowSlot, ShadowValues

ModelKey = tuple[str, str, str]  # name, version, sha256 of the bundle that scored
KEPT_MODELS = 2  # a reload's old and new model


@dataclass(slots=True)
class Scored:
    """One request's scored instances, as the runtime hands them over: references only."""

    time_us: int  # when they were scored (Unix microseconds)
    request_id: str
    route: str
    bundle: Bundle  # the model that scored them (a reload does not change it)
    scores: Scores
    inputs: Sequence[Mapping[str, Any]] | Encoded  # field values, or the tensors (infer)
    encoded: Encoded  # the model's input: field values' encoding, or the tensors
    oov: Sequence[tuple[int, str, str]]  # (instance, field, value) of field values
    impression_ids: list[str]  # one per instance, as the response gives them
    shadow: ShadowSlot | None = None  # where a shadow model's scores arrive, if offered one

    @property
    def rows(self) -> int:
        return len(self.scores.score)


def model_key(bundle: Bundle) -> ModelKey:
    manifest = bundle.manifest
    return manifest.name, manifest.version, manifest.digest


class ImpressionRows:
    """Builds the rows of the models that score, keeping each one's vocabularies as Arrow
    arrays (`FeatureColumns`) while it serves."""

    def __init__(self) -> None:
        self._models: dict[ModelKey, tuple[FeatureColumns, pa.Schema]] = {}

    def tables(self, records: Sequence[Scored]) -> Iterator[tuple[ModelKey, pa.Table]]:
        """The records' rows, one table per model and kind of input (field values or tensors)."""
        groups: dict[tuple[ModelKey, bool], list[Scored]] = {}
        for record in records:
            tensors = isinstance(record.inputs, Encoded)
            groups.setdefault((model_key(record.bundle), tensors), []).append(record)
        for (key, tensors), group in groups.items():
            yield key, self.table(key, group, tensors)

    def table(self, key: ModelKey, records: Sequence[Scored], tensors: bool) -> pa.Table:
        """The rows of records scored by one model, all with field values or all with tensors."""
        columns, schema = self._model(key, records[0].bundle)
        manifest = records[0].bundle.manifest
        counts = np.array([record.rows for record in records])
        total = int(counts.sum())
        which = np.repeat(np.arange(len(records)), counts)  # (N,) each row's record
        scores = np.concatenate([record.scores.score for record in records])
        indices = np.concatenate([record.encoded.indices for record in records])
        weights = np.concatenate([record.encoded.weights for record in records])
        if tensors:
            features, oov_lists = columns.of_tensors(indices, weights)
            oov = pa.array(oov_lists, pa.list_(pa.string()))
        else:
            encoded = Encoded(indices, weights, _oov_rows(records))
            instances = [i for r in records if not isinstance(r.inputs, Encoded) for i in r.inputs]
            features = columns.of_instances(encoded, instances)
            oov = _oov_fields(manifest.fields, encoded.oov, total)
        arrays = {
            im.IMPRESSION_ID: pa.array([i for record in records for i in record.impression_ids],
                                       pa.string()),
            im.REQUEST_ID: pa.array([r.request_id for r in records], pa.string()).take(which),
            im.POSITION: pa.array(np.arange(total, dtype=np.int32)
                                  - np.repeat(np.cumsum(counts, dtype=np.int32) - counts, counts)),
            im.TIME: pa.array(np.repeat([r.time_us for r in records], counts), im.TIME_TYPE),
            im.ROUTE: pa.array([r.route for r in records], pa.string()).take(which),
            im.MODEL_NAME: pa.repeat(manifest.name, total),
            im.MODEL_VERSION: pa.repeat(manifest.version, total),
            im.MODEL_SHA256: pa.repeat(manifest.digest, total),
            im.SCORE: pa.array(scores.astype(np.float64)),
            # The served value: the graph's prediction the response carried.
            im.PREDICTION: pa.array(np.concatenate(
                [record.scores.prediction for record in records]).astype(np.float64)),
            im.OOV: oov,
            im.FEATURES: features,
            **_shadow_columns(records, counts, which),
        }
        return pa.Table.from_arrays([arrays[name] for name in schema.names], schema=schema)

    def _model(self, key: ModelKey, bundle: Bundle) -> tuple[FeatureColumns, pa.Schema]:
        model = self._models.get(key)
        if model is None:
            if len(self._models) >= KEPT_MODELS:
                del self._models[next(iter(self._models))]  # the oldest
            model = self._models[key] = (FeatureColumns(bundle.features),
                                         im.impression_schema(bundle.manifest.fields))
        return model


def _shadow_columns(records: Sequence[Scored], counts: np.ndarray,
                    which: np.ndarray) -> dict[str, pa.Array]:
    """The shadow model's version, scores and predictions where its slot was filled, else
    nulls."""
    total = int(counts.sum())
    # Each slot is read once: a shadow filling it meanwhile cannot split a record's rows.
    found = [_values(r.shadow, r.rows) for r in records]
    if all(values is None for values in found):
        return {im.SHADOW_MODEL_VERSION: pa.nulls(total, pa.string()),
                im.SHADOW_SCORE: pa.nulls(total, pa.float64()),
                im.SHADOW_PREDICTION: pa.nulls(total, pa.float64())}
    missing = np.repeat([values is None for values in found], counts)  # (N,)

    def column(part: str) -> pa.Array:
        parts = [np.full(rows, np.nan) if values is None else getattr(values, part)
                 for values, rows in zip(found, counts, strict=True)]
        return pa.array(np.concatenate(parts).astype(np.float64), mask=missing)

    return {im.SHADOW_MODEL_VERSION: pa.array([_version(v) for v in found], pa.string())
            .take(which),
            im.SHADOW_SCORE: column("scores"), im.SHADOW_PREDICTION: column("predictions")}


def _values(slot: ShadowSlot | None, rows: int) -> ShadowValues | None:
    values = slot.values if slot is not None else None
    return values if values is not None and len(values.scores) == rows else None


def _version(values: ShadowValues | None) -> str | None:
    return None if values is None else values.version


def _oov_rows(records: Sequence[Scored]) -> list[tuple[int, str, str]]:
    """The records' out-of-vocabulary values, their rows counted across the records."""
    oov: list[tuple[int, str, str]] = []
    start = 0
    for record in records:
        oov.extend((start + row, field, value) for row, field, value in record.oov)
        start += record.rows
    return oov


def _oov_fields(fields: Sequence[FieldSpec], oov: Sequence[tuple[int, str, str]],
                rows: int) -> pa.Array:
    """Per row, the fields holding a value out of vocabulary, each once, in field order."""
    if not oov:  # the common case: every row's list empty, made without a Python list a row
        return pa.ListArray.from_arrays(pa.array(np.zeros(rows + 1, np.int32)),
                                        pa.array([], pa.string()))
    order = {spec.name: position for position, spec in enumerate(fields)}
    by_row: dict[int, set[str]] = {}
    for row, field, _ in oov:
        by_row.setdefault(row, set()).add(field)
    out: list[list[str]] = [[]] * rows  # one shared empty list until a row is set
    for row, names in by_row.items():
        out[row] = sorted(names, key=order.__getitem__)
    return pa.array(out, pa.list_(pa.string()))
