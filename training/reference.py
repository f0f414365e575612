"""The bundle's `reference` (model/reference.py): what drift monitoring compares traffic with,
measured on the validation rows through the exported graph, so that its score distribution
is the one the service sees.

Two passes over at most `max_rows` rows: the first finds each field's most frequent values,
numeric fields' deciles and the score's deciles; the second counts the rows into those bins
with `Bins`, the code the service counts its traffic with.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from model.features import FeatureSpace, FieldKind
from model.reference import QUANTILES, TOP_VALUES, Bins, FieldReference, Reference, ScoreReference
from training.shards import Shards

REFERENCE_ROWS = 1 << 17
CHUNK_ROWS = 4096
NUMERIC_SAMPLE = 1 << 17  # values per numeric field kept to find its deciles


def build_reference(onnx_path: Path, space: FeatureSpace, validation: Shards,
                    threads: int = 1, max_rows: int = REFERENCE_ROWS) -> Reference:
    rows = min(len(validation), max_rows)
    if rows == 0:
        raise ValueError("a reference needs validation rows")
    session = _session(onnx_path, threads)
    table = np.zeros(space.num_features, np.int64)
    numeric = [p for p, spec in enumerate(space.fields) if spec.kind == FieldKind.NUMERIC]
    samples: dict[int, list[np.ndarray]] = {p: [] for p in numeric}
    scores = []
    for indices, weights in _chunks(validation, rows):
        table += np.bincount(indices[weights != 0], minlength=space.num_features)
        for p in numeric:
            values = weights[:, p, 0]
            if sum(len(s) for s in samples[p]) < NUMERIC_SAMPLE:
                samples[p].append(values[(values != 0) & (indices[:, p, 0] == space.offsets[p])])
        (score,) = session.run(["score"], {"indices": indices, "weights": weights})
        scores.append(score.astype(np.float64))
    score = np.concatenate(scores)
    score_edges = _deciles(score)
    fields = [
        _quantile_field(space, p, np.concatenate(samples[p])) if p in samples
        else _valued_field(space, p, table)
        for p in range(space.num_fields)
    ]
    # Shares are placeholders until the second pass counts the rows into these bins.
    draft = Reference(rows=rows, fields=fields,
                      score=ScoreReference(edges=score_edges, shares=_uniform(len(score_edges) + 1)))
    bins = Bins(space, draft)
    counts = np.zeros(bins.size, np.int64)
    for indices, weights in _chunks(validation, rows):
        counts += bins.count(indices, weights)
    return Reference(
        rows=rows,
        fields=[field.model_copy(update={"shares": _shares(counts[start : start + len(field.shares)])})
                for field, start in zip(fields, bins.starts.tolist(), strict=True)],
        score=ScoreReference(edges=score_edges, shares=_shares(bins.count_scores(score))),
    )


def _session(onnx_path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), sess_options=options,
                                providers=["CPUExecutionProvider"])


def _chunks(data: Shards, rows: int):  # type: ignore[no-untyped-def]
    for start in range(0, rows, CHUNK_ROWS):
        chunk = data.read(start, min(start + CHUNK_ROWS, rows))
        yield chunk.indices.astype(np.int64), np.ascontiguousarray(chunk.weights, np.float32)


def _valued_field(space: FeatureSpace, position: int, table: np.ndarray) -> FieldReference:
    """The field's most frequent known values, by their count in `table`."""
    spec = space.fields[position]
    first = space.offsets[position] + 1
    counts = table[first : first + len(spec.known)]
    top = [int(k) for k in np.argsort(-counts, kind="stable")[:TOP_VALUES] if counts[k] > 0]
    return FieldReference(name=spec.name, kind="values", values=[spec.known[k] for k in top],
                          shares=_uniform(len(top) + 3))


def _quantile_field(space: FeatureSpace, position: int, values: np.ndarray) -> FieldReference:
    edges = _deciles(values) if len(values) else []
    return FieldReference(name=space.fields[position].name, kind="quantiles", edges=edges,
                          shares=_uniform(len(edges) + 2))


def _deciles(values: np.ndarray) -> list[float]:
    """The distinct inner decile edges (ties merge bins)."""
    edges = np.quantile(values, np.linspace(0, 1, QUANTILES + 1)[1:-1])
    return [float(e) for e in np.unique(edges.astype(np.float32))]


def _shares(counts: np.ndarray) -> list[float]:
    return (counts / max(int(counts.sum()), 1)).tolist()


def _uniform(bins: int) -> list[float]:
    return [1.0 / bins] * bins
