"""Scores and explanations as plain, JSON-ready results (no HTTP, no pydantic on the way out).

Everything that depends only on the model (pair names, a table from feature index to
value name, the global importance) is computed once per loaded model; per request the
work is a few vectorised numpy calls and one pass building dicts.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from model.bundle import Bundle, Scores
from model.features import Encoded, FieldKind

PADDING_NAME = ""
OOV_NAME = "<oov>"


class Explainer:
    def __init__(self, bundle: Bundle) -> None:
        space = bundle.features
        self._bundle = bundle
        self._space = space
        self._bias = bundle.manifest.bias
        self._label = "probability" if bundle.manifest.task == "binary" else "prediction"
        self._names = space.field_names
        self._pairs = [(self._names[i], self._names[j]) for i, j in space.pairs]
        self._positions = list(space.pairs)
        self._rows = np.array([i for i, _ in space.pairs], dtype=np.int64)
        self._cols = np.array([j for _, j in space.pairs], dtype=np.int64)
        self._single = [spec.kind in (FieldKind.CATEGORICAL, FieldKind.BUCKETIZED)
                        for spec in space.fields]
        self._value_names = _value_names(bundle)

    def predictions(
        self, encoded: Encoded, scores: Scores, explain: bool, top_k: int | None = None
    ) -> list[dict[str, Any]]:
        """One result per instance: score, probability or prediction, OOV values and,
        when asked, the explanation (top_k pairs, or all of them)."""
        values = self._bundle.prediction(scores.score).tolist()
        oov: defaultdict[int, list[dict[str, str]]] = defaultdict(list)
        for row, field, value in encoded.oov:
            oov[row].append({"field": field, "value": value})
        results = [
            {"score": score, self._label: value, "oov": oov.get(row, [])}
            for row, (score, value) in enumerate(zip(scores.score.tolist(), values, strict=True))
        ]
        if explain:
            for result, explanation in zip(
                results, self._explanations(encoded, scores, top_k), strict=True
            ):
                result["explanation"] = explanation
        return results

    def _explanations(
        self, encoded: Encoded, scores: Scores, top_k: int | None
    ) -> list[dict[str, Any]]:
        present = (encoded.weights != 0).any(axis=2)  # (B, F), as the model decides it
        pair_present = (present[:, self._rows] & present[:, self._cols]).tolist()  # (B, P)
        order = np.argsort(-np.abs(scores.contributions), axis=1, kind="stable").tolist()
        interaction = scores.contributions.astype(np.float64).sum(axis=1).tolist()
        attention, contributions = scores.attention.tolist(), scores.contributions.tolist()
        linear, shown, fields_present = (
            scores.field_linear.tolist(), self._shown(encoded), present.tolist()
        )
        out = []
        for r in range(len(order)):
            ranked = [p for p in order[r] if pair_present[r][p]]
            kept = ranked if top_k is None else ranked[:top_k]
            out.append({
                "bias": self._bias,
                "linear": [
                    {"field": name, "value": shown[f][r], "weight": linear[r][f]}
                    for f, name in enumerate(self._names) if fields_present[r][f]
                ],
                "interaction": interaction[r],
                "pairs": [
                    {"fields": self._pairs[p],
                     "values": (shown[self._positions[p][0]][r], shown[self._positions[p][1]][r]),
                     "attention": attention[r][p], "contribution": contributions[r][p]}
                    for p in kept
                ],
                "pairs_omitted": len(ranked) - len(kept),
            })
        return out

    def _shown(self, encoded: Encoded) -> list[list[str | list[str]]]:
        """(F, B) human-readable values; one table lookup per single-valued field."""
        shown: list[list[str | list[str]]] = []
        for f, single in enumerate(self._single):
            if single:
                names = self._value_names[encoded.indices[:, f, 0]]
                names[encoded.weights[:, f, 0] == 0] = PADDING_NAME
                shown.append(names.tolist())
            else:
                shown.append([
                    self._space.describe(f, encoded.indices[r, f], encoded.weights[r, f])
                    for r in range(len(encoded.indices))
                ])
        return shown

    def importance(self) -> list[dict[str, Any]]:
        """The manifest's global field-pair importance, largest mean |contribution| first."""
        ranked = sorted(
            self._bundle.manifest.importance, key=lambda p: p.mean_abs_contribution, reverse=True
        )
        return [p.model_dump(mode="json") for p in ranked]


def _value_names(bundle: Bundle) -> np.ndarray:
    """Feature index -> value name, for the fields that hold one value."""
    space = bundle.features
    names = np.full(space.num_features, PADDING_NAME, dtype=object)
    for position, spec in enumerate(space.fields):
        if spec.kind == FieldKind.NUMERIC:
            continue
        offset = space.oov_index(position)
        names[offset] = OOV_NAME
        names[offset + 1 : offset + 1 + len(spec.values)] = spec.values
    return names
