"""Scores and explanations as plain, JSON-ready results (no HTTP, no pydantic on the way out).

Everything that depends only on the model (pair names, a table from feature index to
value name, the global importance) is computed once per loaded model; per request the
work is a few vectorised numpy calls and one pass building dicts.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import compress
from typing import Any, cast

import numpy as np

from model.bundle import Bundle, Scores
from model.features import Encoded, FieldKind
from model.manifest import PairImportance

PADDING_NAME = ""
SMALL_BATCH = 4  # the most instances the row-by-row path is faster for (docs/BENCHMARKS.md)
EMPTY_WARNING = "no field present: every field is missing or null, so the score reflects no input"


class Explainer:
    def __init__(self, bundle: Bundle) -> None:
        space = bundle.features
        self._bundle = bundle
        self._space = space
        self._bias = bundle.manifest.bias
        self._label = "probability" if bundle.manifest.task == "binary" else "prediction"
        self._names = space.field_names
        self._pair_names = np.empty(len(space.pairs), dtype=object)
        self._pair_names[:] = [[self._names[i], self._names[j]] for i, j in space.pairs]
        self._rows, self._cols = space.pair_fields
        self._single = [spec.kind in (FieldKind.CATEGORICAL, FieldKind.BUCKETIZED)
                        for spec in space.fields]
        self._single_fields = np.flatnonzero(self._single)
        self._other_fields = np.flatnonzero(np.logical_not(self._single)).tolist()
        self._value_names = space.value_names
        self._value_list: list[str] = self._value_names.tolist()
        self._pairs = list(space.pairs)
        self._pair_range = range(len(space.pairs))
        self._pair_list: list[list[str]] = self._pair_names.tolist()
        empty = space.encode([{}])  # what an instance with no field encodes to
        self._empty_indices = empty.indices.reshape(1, -1)  # (1, F * L)
        self._empty_weights = empty.weights.reshape(1, -1)

    def _empty_rows(self, encoded: Encoded) -> list[int]:
        """Rows of instances that hold no field: encoded exactly as `{}` is. The weights
        first, on flat rows: most requests have no such row and stop there."""
        count = len(encoded.weights)
        same = (encoded.weights.reshape(count, -1) == self._empty_weights).all(axis=1)
        if not same.any():
            return []
        rows = np.flatnonzero(same)
        same_indices = encoded.indices[rows].reshape(len(rows), -1) == self._empty_indices
        return cast(list[int], rows[same_indices.all(axis=1)].tolist())

    def predictions(
        self, encoded: Encoded, scores: Scores, explain: bool, top_k: int | None = None
    ) -> list[dict[str, Any]]:
        """One result per instance: score, probability or prediction, OOV values and,
        when asked, the explanation (top_k pairs, or all of them)."""
        values = self._bundle.prediction(scores.score).tolist()
        label = self._label
        if encoded.oov:
            oov: defaultdict[int, list[dict[str, str]]] = defaultdict(list)
            for row, field, value in encoded.oov:
                oov[row].append({"field": field, "value": value})
            results = [{"score": score, label: value, "oov": oov.get(row, [])} for row, (
                score, value) in enumerate(zip(scores.score.tolist(), values, strict=True))]
        else:  # the common case: no row numbers to look up
            results = [{"score": score, label: value, "oov": []}
                       for score, value in zip(scores.score.tolist(), values, strict=True)]
        for row in self._empty_rows(encoded):
            results[row]["warning"] = EMPTY_WARNING
        if explain:
            for result, explanation in zip(
                results, self._explanations(encoded, scores, top_k), strict=True
            ):
                result["explanation"] = explanation
        return results

    def _explanations(
        self, encoded: Encoded, scores: Scores, top_k: int | None
    ) -> list[dict[str, Any]]:
        """Column-wise per instance (parallel lists): a dict per pair would cost more than
        scoring. Small batches go row by row in plain Python, larger ones through
        whole-batch numpy calls, whose fixed cost is more than a few rows' whole
        explanations; each path is several times faster than the other on its side
        (docs/BENCHMARKS.md), and tests/service/test_explain.py keeps them identical."""
        if len(encoded.indices) <= SMALL_BATCH:
            return self._explain_rows(encoded, scores, top_k)
        return self._explain_batch(encoded, scores, top_k)

    def _explain_rows(
        self, encoded: Encoded, scores: Scores, top_k: int | None
    ) -> list[dict[str, Any]]:
        out = []
        interaction = scores.contributions.astype(np.float64).sum(axis=1).tolist()
        present_fields, present_pairs = self._space.presence(encoded.weights)
        rows = zip(
            present_fields.tolist(), present_pairs.tolist(), encoded.indices[:, :, 0].tolist(),
            scores.attention.tolist(), scores.contributions.tolist(),
            scores.field_linear.tolist(), strict=True,
        )
        for r, (present, pair_present, first, attention, contributions, linear) in enumerate(rows):
            shown = [
                "" if not present[f] else self._value_list[first[f]] if single
                else self._space.describe(f, encoded.indices[r, f], encoded.weights[r, f])
                for f, single in enumerate(self._single)
            ]
            ranked = sorted(compress(self._pair_range, pair_present),
                            key=lambda p: -abs(contributions[p]))
            kept = ranked if top_k is None else ranked[:top_k]
            held = [f for f in range(len(present)) if present[f]]
            out.append({
                "bias": self._bias,
                "linear": {"fields": [self._names[f] for f in held],
                           "values": [shown[f] for f in held],
                           "weights": [linear[f] for f in held]},
                "interaction": interaction[r],
                "pairs": {"fields": [self._pair_list[p] for p in kept],
                          "values": [[shown[self._pairs[p][0]], shown[self._pairs[p][1]]]
                                     for p in kept],
                          "attention": [attention[p] for p in kept],
                          "contributions": [contributions[p] for p in kept]},
                "pairs_omitted": len(ranked) - len(kept),
            })
        return out

    def _explain_batch(
        self, encoded: Encoded, scores: Scores, top_k: int | None
    ) -> list[dict[str, Any]]:
        present, pair_present = self._space.presence(encoded.weights)  # (B, F), (B, P)
        order, kept = self._ranked(pair_present, scores.contributions, top_k)  # (B, K), (B,)
        shown = self._shown(encoded)  # (B, F) objects
        batch = np.arange(len(order))[:, None]
        sides = np.stack([self._rows[order], self._cols[order]], axis=2)  # (B, K, 2) fields
        columns = (
            self._linear(shown, scores.field_linear, present),
            scores.contributions.astype(np.float64).sum(axis=1).tolist(),  # interaction
            # names: shared per-model lists; values: one gather of (B, K, 2) shown values
            self._pair_names[order].tolist(), shown[batch[:, :, None], sides].tolist(),
            scores.attention[batch, order].tolist(), scores.contributions[batch, order].tolist(),
            (pair_present.sum(axis=1) - kept).tolist(),
        )
        bias, full = self._bias, order.shape[1]
        if (kept == full).all():  # the common case: every row shows as many pairs, no slices
            return [
                {"bias": bias, "linear": linear, "interaction": interaction,
                 "pairs": {"fields": names, "values": values, "attention": att,
                           "contributions": contrib},
                 "pairs_omitted": omitted}
                for linear, interaction, names, values, att, contrib, omitted in zip(
                    *columns, strict=True)
            ]
        return [
            {"bias": bias, "linear": linear, "interaction": interaction,
             "pairs": {"fields": names[:n], "values": values[:n], "attention": att[:n],
                       "contributions": contrib[:n]},
             "pairs_omitted": omitted}
            for linear, interaction, names, values, att, contrib, omitted, n in zip(
                *columns, kept.tolist(), strict=True)
        ]

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
    ) -> list[dict[str, Any]]:
        """Per instance, the first-order term of each field it holds."""
        if present.all():  # the common case: every row holds every field
            return [{"fields": self._names, "values": values, "weights": weights}
                    for values, weights in zip(shown.tolist(), field_linear.tolist(), strict=True)]
        out = []
        every = cast(list[bool], present.all(axis=1).tolist())
        for r, (values, weights) in enumerate(zip(shown.tolist(), field_linear.tolist(),
                                                  strict=True)):
            if every[r]:
                out.append({"fields": self._names, "values": values, "weights": weights})
                continue
            held = np.flatnonzero(present[r]).tolist()
            out.append({"fields": [self._names[f] for f in held],
                        "values": [values[f] for f in held],
                        "weights": [weights[f] for f in held]})
        return out

    def _shown(self, encoded: Encoded) -> np.ndarray:
        """(B, F) human-readable values; one table lookup for the single-valued fields."""
        shown = np.empty((len(encoded.indices), len(self._single)), dtype=object)
        single = self._single_fields
        names = self._value_names[encoded.indices[:, single, 0]]  # (B, S)
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

