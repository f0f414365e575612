"""Scores and explanations as typed columns (no HTTP, no wire form on the way out).

Everything that depends only on the model (pair names, a table from feature index to
value name, the global importance) is computed once per loaded model; per request the
work is a few vectorised numpy calls and one pass filling the columns of `Explanations`,
which `service.codecs.predictions` renders.
"""

from __future__ import annotations

from itertools import compress
from typing import TypeVar, cast

import numpy as np

from model.bundle import Bundle, Scores
from model.features import Encoded, FieldKind
from model.manifest import PairImportance
from service.core.results import Explanations, LinearColumns, ModelRef, PairColumns, Predictions, Shown

PADDING_NAME = ""
SMALL_BATCH = 4  # the most instances the row-by-row path is faster for (docs/BENCHMARKS.md)
T = TypeVar("T")


class Explainer:
    def __init__(self, bundle: Bundle) -> None:
        space = bundle.features
        self._bundle = bundle
        self._space = space
        manifest = bundle.manifest
        self._constants = (manifest.bias, manifest.logit_shift,
                           manifest.calibration.kind if manifest.task == "binary" else None)
        self._ref = ModelRef.of(bundle.manifest)
        self._task = bundle.manifest.task
        self._names = space.field_names
        self._pair_names = np.empty(len(space.pairs), dtype=object)
        self._pair_names[:] = [[self._names[i], self._names[j]] for i, j in space.pairs]
        self._rows, self._cols = space.pair_fields
        self._single = [spec.kind in (FieldKind.CATEGORICAL, FieldKind.BUCKETIZED)
                        for spec in space.fields]
        self._single_fields = np.flatnonzero(self._single)
        self._other_fields = np.flatnonzero(np.logical_not(self._single)).tolist()
        self._value_list = space.name_list()
        self._pairs = list(space.pairs)
        self._pair_range = range(len(space.pairs))
        self._pair_list: list[list[str]] = self._pair_names.tolist()
        empty = space.encode([{}])  # what an instance with no field encodes to
        self._empty_indices = empty.indices.reshape(1, -1)  # (1, F * L)
        self._empty_weights = empty.weights.reshape(1, -1)
        self._empty_lists = (self._empty_weights[0].tolist(), self._empty_indices[0].tolist())

    def _empty_rows(self, encoded: Encoded) -> list[int]:
        """Rows of instances that hold no field: encoded exactly as `{}` is. The weights
        first, on flat rows: most requests have no such row and stop there."""
        count = len(encoded.weights)
        if count <= SMALL_BATCH:  # a few rows compare as lists (the same ==) faster
            weights, indices = self._empty_lists
            flat = encoded.weights.reshape(count, -1).tolist()
            return [row for row in range(count) if flat[row] == weights
                    and encoded.indices[row].reshape(-1).tolist() == indices]
        same = (encoded.weights.reshape(count, -1) == self._empty_weights).all(axis=1)
        if not same.any():
            return []
        rows = np.flatnonzero(same)
        same_indices = encoded.indices[rows].reshape(len(rows), -1) == self._empty_indices
        return cast(list[int], rows[same_indices.all(axis=1)].tolist())

    def predictions(
        self, encoded: Encoded, scores: Scores, explain: bool, top_k: int | None = None
    ) -> Predictions:
        """The batch's results: score, probability or prediction, OOV values, instances
        with no field and, when asked, the explanations (top_k pairs, or all of them)."""
        return Predictions(
            self._ref, self._task, scores.score.tolist(),
            scores.prediction.tolist(), encoded.oov, self._empty_rows(encoded),
            self.explanations(encoded, scores, top_k) if explain else None,
        )

    def explanations(self, encoded: Encoded, scores: Scores, top_k: int | None) -> Explanations:
        """Small batches go row by row in plain Python, larger ones through whole-batch
        numpy calls, whose fixed cost is more than a few rows' whole explanations; each
        path is several times faster than the other on its side (docs/BENCHMARKS.md), and
        tests/service/test_explain.py keeps them identical."""
        if len(encoded.indices) <= SMALL_BATCH:
            return self._explain_rows(encoded, scores, top_k)
        return self._explain_batch(encoded, scores, top_k)

    def _explain_rows(self, encoded: Encoded, scores: Scores, top_k: int | None) -> Explanations:
        linear = LinearColumns([], [], [])
        pairs = PairColumns([], [], [], [])
        omitted: list[int] = []
        present_fields, present_pairs = self._space.presence(encoded.weights)
        rows = zip(
            present_fields.tolist(), present_pairs.tolist(), encoded.indices[:, :, 0].tolist(),
            scores.attention.tolist(), scores.contributions.tolist(),
            scores.field_linear.tolist(), strict=True,
        )
        for r, (present, pair_present, first, attention, contributions, weights) in enumerate(rows):
            shown = [
                "" if not present[f] else self._value_list[first[f]] if single
                else self._space.describe(f, encoded.indices[r, f], encoded.weights[r, f])
                for f, single in enumerate(self._single)
            ]
            ranked = sorted(compress(self._pair_range, pair_present),
                            key=lambda p: -abs(contributions[p]))
            kept = ranked if top_k is None else ranked[:top_k]
            held = [f for f in range(len(present)) if present[f]]
            linear.fields.append([self._names[f] for f in held])
            linear.values.append([shown[f] for f in held])
            linear.weights.append([weights[f] for f in held])
            pairs.fields.append([self._pair_list[p] for p in kept])
            pairs.values.append([[shown[self._pairs[p][0]], shown[self._pairs[p][1]]] for p in kept])
            pairs.attention.append([attention[p] for p in kept])
            pairs.contributions.append([contributions[p] for p in kept])
            omitted.append(len(ranked) - len(kept))
        interaction = scores.contributions.astype(np.float64).sum(axis=1).tolist()
        return Explanations(*self._constants, linear, interaction, pairs, omitted)

    def _explain_batch(self, encoded: Encoded, scores: Scores, top_k: int | None) -> Explanations:
        present, pair_present = self._space.presence(encoded.weights)  # (B, F), (B, P)
        order, kept = self._ranked(pair_present, scores.contributions, top_k)  # (B, K), (B,)
        shown = self._shown(encoded)  # (B, F) objects
        batch = np.arange(len(order))[:, None]
        sides = np.stack([self._rows[order], self._cols[order]], axis=2)  # (B, K, 2) fields
        pairs = PairColumns(
            # names: shared per-model lists; values: one gather of (B, K, 2) shown values
            self._pair_names[order].tolist(), shown[batch[:, :, None], sides].tolist(),
            scores.attention[batch, order].tolist(), scores.contributions[batch, order].tolist(),
        )
        if not (kept == order.shape[1]).all():  # rows showing fewer pairs than the widest
            counts = kept.tolist()
            pairs = PairColumns(_heads(pairs.fields, counts), _heads(pairs.values, counts),
                                _heads(pairs.attention, counts), _heads(pairs.contributions, counts))
        return Explanations(
            *self._constants, self._linear(shown, scores.field_linear, present),
            scores.contributions.astype(np.float64).sum(axis=1).tolist(),  # interaction
            pairs, (pair_present.sum(axis=1) - kept).tolist(),
        )

    @staticmethod
    def _ranked(
        pair_present: np.ndarray, contributions: np.ndarray, top_k: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per row, the pairs to show (present ones, largest |contribution| first, the
        first `kept` of each row) and how many."""
        if pair_present.all():  # the common case: no absent pair to move last
            order = np.argsort(-np.abs(contributions), axis=1, kind="stable")
            count = order.shape[1] if top_k is None else min(order.shape[1], top_k)
            return order[:, :count], np.full(len(order), count)
        key = np.where(pair_present, -np.abs(contributions), np.inf)  # absent pairs last
        order = np.argsort(key, axis=1, kind="stable")
        counts = pair_present.sum(axis=1)
        kept = counts if top_k is None else np.minimum(counts, top_k)
        return order[:, : int(kept.max(initial=0))], kept

    def _linear(
        self, shown: np.ndarray, field_linear: np.ndarray, present: np.ndarray
    ) -> LinearColumns:
        """Per instance, the first-order term of each field it holds."""
        values: list[list[Shown]] = shown.tolist()
        weights: list[list[float]] = field_linear.tolist()
        if present.all():  # the common case: every row holds every field
            return LinearColumns([self._names] * len(values), values, weights)
        out = LinearColumns([], [], [])
        every = cast(list[bool], present.all(axis=1).tolist())
        for r, (row_values, row_weights) in enumerate(zip(values, weights, strict=True)):
            if every[r]:
                held_names, held_values, held_weights = self._names, row_values, row_weights
            else:
                held = np.flatnonzero(present[r]).tolist()
                held_names = [self._names[f] for f in held]
                held_values = [row_values[f] for f in held]
                held_weights = [row_weights[f] for f in held]
            out.fields.append(held_names)
            out.values.append(held_values)
            out.weights.append(held_weights)
        return out

    def _shown(self, encoded: Encoded) -> np.ndarray:
        """(B, F) human-readable values; one table lookup for the single-valued fields."""
        shown = np.empty((len(encoded.indices), len(self._single)), dtype=object)
        single = self._single_fields
        names = self._space.names(encoded.indices[:, single, 0])  # (B, S)
        names[encoded.weights[:, single, 0] == 0] = PADDING_NAME
        shown[:, single] = names
        for f in self._other_fields:  # multi-valued and numeric: element by element
            for r in range(len(shown)):
                shown[r, f] = self._space.describe(f, encoded.indices[r, f], encoded.weights[r, f])
        return shown

    def importance(self) -> list[PairImportance]:
        """The manifest's global field-pair importance, largest mean |contribution| first."""
        return sorted(
            self._bundle.manifest.importance, key=lambda p: p.mean_abs_contribution, reverse=True
        )


def _heads(column: list[list[T]], counts: list[int]) -> list[list[T]]:
    """The first counts[r] elements of each row r."""
    return [row[:n] for row, n in zip(column, counts, strict=True)]
